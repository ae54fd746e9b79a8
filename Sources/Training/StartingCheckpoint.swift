import Foundation
import Recurrent

/// The checkpoint a run starts from, read and checked in one place: `--resume` continues the
/// run it holds, `--init-from` starts a new run from its weights. The executable reads it for
/// the config its flags go on top of (`baseConfig`), the session for the numbers
/// (`TrainingSession`); both get the same error, with the same words, for the same directory.
public struct StartingCheckpoint {
    /// Why the checkpoint is read.
    public enum Purpose: Sendable, Equatable {
        /// Continue the saved run: its config, step, optimizer, carried state and generator.
        case resume
        /// Start a new run from the weights only.
        case initFrom
    }

    public let purpose: Purpose
    public let directory: URL
    public let checkpoint: Checkpoint
    /// What reading had to repair first (a half-replaced checkpoint restored, leftovers of dead
    /// writers removed; `Checkpoint.recover`), one line each for the log.
    public let repairs: [String]

    public var path: String { directory.path }

    /// The run to continue: the checkpoint's training state when resuming (always there then),
    /// nil when starting a new run from the weights.
    public var resumedRun: Checkpoint.TrainingState? { purpose == .resume ? checkpoint.training : nil }

    /// Reads `directory` for `purpose`. Throws `TrainingError.nothingToResume` when a resume
    /// finds no training checkpoint, and `TrainingError.checkpoint` (one line naming the
    /// directory or file) when it cannot be repaired or read (`Checkpoint.read`).
    public static func read(_ directory: URL, for purpose: Purpose) throws -> StartingCheckpoint {
        let repairs: [String]
        do {
            repairs = try Checkpoint.recover(directory)
        } catch {
            throw TrainingError.checkpoint("checkpoint \(directory.path): recovering an interrupted write failed: \(error)")
        }
        let hasState = FileManager.default.fileExists(atPath: directory.appendingPathComponent(Checkpoint.stateFile).path)
        if purpose == .resume && !hasState { throw TrainingError.nothingToResume(path: directory.path) }
        let checkpoint = try Checkpoint.read(from: directory)
        if purpose == .resume && checkpoint.training == nil { throw TrainingError.nothingToResume(path: directory.path) }
        return StartingCheckpoint(purpose: purpose, directory: directory, checkpoint: checkpoint, repairs: repairs)
    }

    /// The checkpoint `options` name (`resume` wins over `initFrom`), read; nil for a fresh run.
    public static func read(for options: RunOptions) throws -> StartingCheckpoint? {
        if options.resume {
            guard let directory = options.checkpointDirectory else {
                throw TrainingError.missingSetting(.resume, requires: .checkpointDirectory)
            }
            return try read(directory, for: .resume)
        }
        return try options.initFrom.map { try read($0, for: .initFrom) }
    }

    /// The config a run from this checkpoint starts from before any flag: a resumed run's own;
    /// for a new run the saved run's with the default step count (and no dropout when a
    /// classifier starts from a language model), or for a bare model file the default config
    /// with the model's shape.
    public func baseConfig(task: TrainingTask?) -> TrainingConfig {
        guard let saved = checkpoint.training else { return Self.config(shapedAs: checkpoint.model) }
        var config = saved.config
        if purpose == .initFrom {
            config.steps = TrainingConfig().steps
            if !config.isClassifier && task == .classify { config.dropout = nil }   // dropout is the language model's
        }
        return config
    }

    /// The default config with `model`'s cell, layers, hidden size, task, direction and pooling.
    static func config(shapedAs model: ModelConfig) -> TrainingConfig {
        var config = TrainingConfig()
        config.cell = model.cell
        config.layers = model.layerCount
        config.hidden = model.hiddenSize
        if model.labelCount != nil { config.task = .classify }
        if model.bidirectional { config.bidirectional = true }
        if model.pooling != .last { config.pooling = model.pooling }
        return config
    }

    /// Fields a run started from another's weights may not change: the weights' shape.
    public static let fixedByWeights: Set<ConfigField> = [.cell, .layers, .hidden, .task, .bidirectional]

    /// Refuses a config this checkpoint cannot start, naming the first field that differs
    /// (`TrainingError.startMismatch`): a resumed run keeps everything but
    /// `TrainingConfig.resumableFields`; a run from weights keeps `fixedByWeights`, except that
    /// a classifier may start from a language model (`LanguageModelTransfer`).
    public func requireCompatible(_ config: TrainingConfig) throws {
        let saved = resumedRun?.config ?? Self.config(shapedAs: checkpoint.model)
        let fixed: Set<ConfigField>
        switch purpose {
        case .resume: fixed = Set(ConfigField.allCases).subtracting(TrainingConfig.resumableFields)
        case .initFrom:
            let transfer = !saved.isClassifier && config.isClassifier
            fixed = Self.fixedByWeights.subtracting(transfer ? [.task, .bidirectional] : [])
        }
        for field in ConfigField.allCases where fixed.contains(field) {
            guard let was = saved.value(of: field), let now = config.value(of: field), was != now else { continue }
            throw TrainingError.startMismatch(field, saved: was, requested: now, path: path, resumed: purpose == .resume)
        }
    }
}
