import ArgumentParser
import Foundation
import Recurrent
import Training

/// Model, data and optimisation flags shared by train, serve and bench: they build the
/// `TrainingConfig` that fixes the numbers of a run.
struct ModelFlags: ParsableArguments {
    @Option(help: "Recurrent cell: rnn, lstm or gru.")
    var cell: CellType = Defaults.config.cell
    @Option(help: "Stacked recurrent layers (L).")
    var layers = Defaults.config.layers
    @Option(help: "Hidden units per layer (H).")
    var hidden = Defaults.config.hidden

    /// Called by ArgumentParser for every command with these flags: a model whose weights
    /// alone (smallest vocabulary, one stream, window 1) need more than the machine's memory is
    /// refused here, before anything is allocated. The full check, with --batch and --seq, is
    /// `requireTrainingMemory`.
    func validate() throws {
        guard layers >= 1, hidden >= 1 else { return }   // TrainingConfig.validate names these
        let bytes = MemoryBudget.trainingBytes(cell: cell, vocabularySize: 1, hiddenSize: hidden, layers: layers,
                                               streams: 1, window: 1, chunkStreams: 1)
        try MemoryBudget.require(bytes, for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden)")
    }

    /// Refuses a training run whose parameters, gradients, optimizer state, chunk slabs and
    /// workspaces (`MemoryBudget.trainingBytes`, vocabulary ≥ 1) exceed physical memory.
    /// `workersElsewhere`: the streams are split among that many worker processes on other
    /// machines (serve), so this machine holds one worker's share; train's local workers share
    /// this machine and count as one.
    func requireTrainingMemory(data: DataFlags, chunk: Int?, workersElsewhere: Int = 1) throws {
        guard layers >= 1, hidden >= 1, data.batch >= 1, data.seq >= 1 else { return }   // named by TrainingConfig.validate
        let chunkStreams = chunk.map { max($0, 1) } ?? TrainingConfig.defaultChunkStreams(streams: data.batch)
        let workers = max(1, workersElsewhere)
        let share = max(chunkStreams, data.batch / workers + (data.batch % workers == 0 ? 0 : 1))
        let bytes = MemoryBudget.trainingBytes(cell: cell, vocabularySize: 1, hiddenSize: hidden, layers: layers,
                                               streams: share, window: data.seq, chunkStreams: chunkStreams)
        let split = workers > 1 ? " --workers \(workers)" : ""
        try MemoryBudget.require(bytes, for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden) --batch \(data.batch) --seq \(data.seq)\(split)")
    }
}

/// The defaults flags show: every one comes from the library's single source.
enum Defaults {
    static let config = TrainingConfig()
}

struct DataFlags: ParsableArguments {
    @Option(help: "UTF-8 text corpus (default: the built-in generated corpus).")
    var data: String?
    @Option(help: "BPTT window T in characters.")
    var seq = Defaults.config.window
    @Option(help: "Global number of parallel streams N (the batch).")
    var batch = Defaults.config.streams
    @Option(name: .customLong("val-fraction"), help: "Fraction of the corpus (its end) held out for validation.")
    var valFraction = Defaults.config.validationFraction

    func loadCorpus() throws -> Corpus {
        guard let data else { return Corpus.builtin() }
        return try Corpus.load(path: data)
    }
}

struct OptimizationFlags: ParsableArguments {
    @Option(help: "Optimizer steps (default \(Defaults.config.steps); ignored when --epochs is given).")
    var steps: Int?
    @Option(help: "Train for this many epochs instead of --steps.")
    var epochs: Int?
    @Option(help: "Optimizer: sgd, momentum, adagrad, rmsprop or adam.")
    var optimizer: OptimizerKind = Defaults.config.optimizer.kind
    @Option(help: "Learning rate (default \(OptimizerKind.adam.defaultLearningRate) for adam; \(OptimizerKind.allCases.filter { $0 != .adam }.map { "\($0.rawValue) \($0.defaultLearningRate)" }.joined(separator: ", "))).")
    var lr: Float?
    @Option(name: .customLong("lr-decay-every"), help: "Multiply the learning rate by --lr-decay every this many steps (0 = constant).")
    var lrDecayEvery = Defaults.config.learningRateDecayEvery
    @Option(name: .customLong("lr-decay"), help: "Step-decay factor of the learning rate.")
    var lrDecay: Float = TrainingConfig.defaultDecayFactor
    @Option(help: "Clip the averaged gradient to this global L2 norm (0 = off).")
    var clip: Float = Defaults.config.clip
    @Option(help: "Seed of the initial weights.")
    var seed: UInt64 = Defaults.config.seed
    @Option(help: "Streams per gradient chunk, the fixed unit of parallel work (default: batch/4). Equal chunks give bit-identical results for any --threads/--workers.")
    var chunk: Int?

    func validateValues() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive, got \(lr)") }
    }
}

extension TrainingConfig {
    /// The model and data layout from the flags, everything else at its default.
    init(model: ModelFlags, data: DataFlags) {
        self.init()
        cell = model.cell
        layers = model.layers
        hidden = model.hidden
        streams = data.batch
        window = data.seq
        validationFraction = data.valFraction
        chunkStreams = TrainingConfig.defaultChunkStreams(streams: max(1, data.batch))
    }

    /// Builds the run's config from the flags; `--epochs` needs the corpus to count steps.
    init(model: ModelFlags, data: DataFlags, optimization o: OptimizationFlags, corpus: Corpus) throws {
        self.init(model: model, data: data)
        optimizer = OptimizerConfig(kind: o.optimizer, learningRate: o.lr)
        learningRateDecayEvery = o.lrDecayEvery
        learningRateDecay = o.lrDecayEvery > 0 ? o.lrDecay : 1
        clip = o.clip
        seed = o.seed
        if let chunk = o.chunk { chunkStreams = chunk }
        if let steps = o.steps { self.steps = steps }
        try validate()
        if let epochs = o.epochs { steps = try steps(forEpochs: epochs, corpus: corpus) }
    }
}

/// Parallelism, evaluation, checkpoint and log flags of `train` and `serve`.
struct RunFlags: ParsableArguments {
    @Option(help: "Threads per worker (default: the machine's cores, divided among local workers).")
    var threads: Int?
    @Option(help: "Worker processes on this machine (1 = in-process, no server; default: cores when more than one).")
    var workers: Int?
    @Option(help: "Parameter servers: the weights are cut into this many ranges by bytes, each updated by its own `recur shard` process; any count gives the same weights (default 1: the coordinator).")
    var shards = 1
    @Option(name: .customLong("eval-every"), help: "Validation loss every this many steps (0 = only at the end).")
    var evalEvery = 0
    @Option(name: .customLong("eval-streams"), help: "Evaluate the validation split as E contiguous streams (1 = exact per-character loss).")
    var evalStreams = 1
    @Option(name: .customLong("checkpoint-dir"), help: "Checkpoint directory (written atomically).")
    var checkpointDir = "checkpoints/recur"
    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every this many steps (0 = only at the end).")
    var checkpointEvery = 0
    @Flag(help: "Continue the run saved in --checkpoint-dir exactly where it stopped.")
    var resume = false
    @Option(name: .customLong("init-from"), help: "Start from the weights of this checkpoint directory.")
    var initFrom: String?
    @Option(name: .customLong("log-jsonl"), help: "Write one JSON record per step to this file.")
    var logJsonl: String?
    @Option(name: .customLong("sample-length"), help: "Characters of sample text printed at the end (0 = none).")
    var sampleLength = 300

    func validateValues() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1, got \(workers)") }
        if shards < 1 { throw ValidationError("--shards must be at least 1, got \(shards)") }
        if evalEvery < 0 { throw ValidationError("--eval-every must be ≥ 0") }
        if evalStreams < 1 { throw ValidationError("--eval-streams must be at least 1") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be ≥ 0") }
        if resume && initFrom != nil { throw ValidationError("--resume and --init-from exclude each other") }
        if sampleLength < 0 { throw ValidationError("--sample-length must be ≥ 0") }
        try MemoryBudget.require(MemoryBudget.samplingBytes(parameterCount: 0, length: sampleLength),
                                 for: "--sample-length \(sampleLength)")
    }

    func runOptions(threads: Int) -> RunOptions {
        var options = RunOptions()
        options.threads = threads
        options.evalEvery = evalEvery
        options.evalStreams = evalStreams
        options.checkpointDirectory = checkpointDir.isEmpty ? nil : URL(fileURLWithPath: checkpointDir)
        options.checkpointEvery = checkpointEvery
        options.resume = resume
        options.initFrom = initFrom.map { URL(fileURLWithPath: $0) }
        return options
    }
}

enum Machine {
    static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }
}
