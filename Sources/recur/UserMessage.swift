import Cluster
import Training

/// Library errors carry data; this is where they become lines that name the user's flags.
enum UserMessage {
    static func text(for error: Error) -> String? {
        switch error {
        case TrainingError.invalidValue(let field, let value, let rule):
            return "\(field.flag) must be \(rule), got \(value)"
        case TrainingError.missingSetting(let field, let requires):
            return "\(field.flag) needs \(requires == .task ? "--task classify" : requires.flag)"
        case TrainingError.notADirectory(let field, let path):
            return "\(field.flag) \(path) exists and is not a directory"
        case TrainingError.startMismatch(let field, let saved, let requested, let path, let resumed):
            return resumed
                ? "\(field.flag) \(requested) differs from the run in \(path) (\(field.flag) \(saved)); a resumed run keeps its model, data layout, optimizer and seed (--init-from starts a new run from its weights)"
                : "\(field.flag) \(requested) asks for another model than \(path) has (\(field.flag) \(saved)); a run from its weights keeps its model"
        case TrainingError.diverged:
            return "\(error); lower --lr or set --clip"
        case ClusterError.coordinatorLost(_, _, encrypted: true), ClusterError.coordinatorUnreachable(_, _, encrypted: true):
            return "\(error) (--server-key, --authorized-keys)"
        case ClusterError.refused(let text) where text.contains("corpus_digest"):
            return "\(error) (give --data the coordinator's corpus file)"
        case ClusterError.refused(let text) where text.contains("join token"):
            return "\(error) (in RECUR_JOIN_TOKEN or a --token-file)"
        case ClusterError.tooFewChunks(let workers, let chunks):
            return "--workers \(workers) needs at least as many gradient chunks, and --batch / --chunk gives \(chunks); lower --chunk"
        default:
            return nil
        }
    }
}

extension ConfigField {
    /// The command-line flag that sets this field.
    var flag: String {
        switch self {
        case .cell: return "--cell"
        case .layers: return "--layers"
        case .hidden: return "--hidden"
        case .streams: return "--batch"
        case .window: return "--seq"
        case .steps: return "--steps"
        case .optimizer: return "--optimizer"
        case .learningRate: return "--lr"
        case .clip: return "--clip"
        case .validationFraction: return "--val-fraction"
        case .learningRateDecayEvery: return "--lr-decay-every"
        case .learningRateDecay: return "--lr-decay"
        case .chunkStreams: return "--chunk"
        case .seed: return "--seed"
        case .dropout: return "--dropout"
        case .task: return "--task"
        case .maxLength: return "--max-len"
        case .bidirectional: return "--bidirectional"
        case .pooling: return "--pool"
        case .checkpointDirectory: return "--checkpoint"
        case .resume: return "--resume"
        case .initFrom: return "--init-from"
        case .workers: return "--workers"
        }
    }
}
