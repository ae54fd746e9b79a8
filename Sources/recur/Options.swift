import ArgumentParser
import Foundation
import Recurrent
import Training

// Flag groups shared by the commands. One name per concept everywhere (`--checkpoint`,
// `--sample-length`, `--workers`), and every default from one place: `Defaults`, which reads
// the library's own defaults. Flags that shape the numbers of a run are optional here, so
// that a resumed run can tell a flag given again from one left out (`RunSetup`).

/// The defaults flags show: every one comes from the library's single source.
enum Defaults {
    static let config = TrainingConfig()
    static let run = RunOptions()
    static let sampler = Sampler()
    static let checkpoint = "checkpoints/recur"
    /// Non-terminal output prints every this many steps (a terminal's line updates every step).
    static let printEvery = 10
    /// Characters of a sample (`recur sample`, and train's samples).
    static let sampleLength = 300
}

/// Model flags of train, serve, bench and summary: they fix the shape of the weights.
struct ModelFlags: ParsableArguments {
    @Option(help: "Recurrent cell: rnn, lstm or gru (default: \(Defaults.config.cell.rawValue)).")
    var cell: CellType?
    @Option(help: "Stacked recurrent layers L (default: \(Defaults.config.layers)).")
    var layers: Int?
    @Option(help: "Hidden units per layer H (default: \(Defaults.config.hidden)).")
    var hidden: Int?
    @Flag(help: "Bidirectional layers, PyTorch semantics (classifiers: --task classify).")
    var bidirectional = false
    @Option(help: "What a classifier's head reads: last (the final h) or mean (the mean of the top layer's outputs) (default: last).")
    var pool: Pooling?

    var resolvedCell: CellType { cell ?? Defaults.config.cell }
    var resolvedLayers: Int { layers ?? Defaults.config.layers }
    var resolvedHidden: Int { hidden ?? Defaults.config.hidden }

    /// Called by ArgumentParser for every command with these flags: a model whose weights
    /// alone (smallest vocabulary, one stream, window 1) need more than the machine's memory is
    /// refused here, before anything is allocated. The full check, with the batch and window,
    /// is `TrainingConfig.requireMemory`.
    func validate() throws {
        let (cell, layers, hidden) = (resolvedCell, resolvedLayers, resolvedHidden)
        guard layers >= 1, hidden >= 1 else { return }   // TrainingConfig.validate names these
        let bytes = MemoryBudget.trainingBytes(cell: cell, vocabularySize: 1, hiddenSize: hidden, layers: layers,
                                               streams: 1, window: 1, chunkStreams: 1)
        try MemoryBudget.requireFlags(bytes, for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden)")
    }
}

struct DataFlags: ParsableArguments {
    @Option(help: "What to learn: lm (next character of a text) or classify (lines label<TAB>text) (default: lm; resuming: the checkpoint's).")
    var task: TrainingTask?
    @Option(help: "UTF-8 text corpus, or with --task classify lines label<TAB>text (default: built-in generated data; when resuming, the checkpoint's).")
    var data: String?
    @Option(name: .customLong("val-data"), help: "--task classify: validation examples from this file instead of the last --val-fraction of --data.")
    var valData: String?
    @Option(name: .customLong("max-len"), help: "--task classify: longer inputs are cut to their first this many characters (default: \(TrainingConfig.defaultMaxLength)).")
    var maxLen: Int?
    @Option(help: "BPTT window T in characters (default: \(Defaults.config.window)).")
    var seq: Int?
    @Option(help: "Global number of parallel streams N, the batch (default: \(Defaults.config.streams)).")
    var batch: Int?
    @Option(name: .customLong("val-fraction"), help: "Fraction of the corpus (its end) held out for validation (default: \(Defaults.config.validationFraction)).")
    var valFraction: Double?
    @Option(name: .customLong("token-cache"), help: "Directory of token files: a corpus over 16 MB is encoded once and then memory-mapped, shared by local workers (default: $XDG_CACHE_HOME/recur or ~/.cache/recur; \"\" = none).")
    var tokenCache: String?

    /// The token cache of --token-cache, else the default directory.
    var cache: TokenCache? { TokenCacheFlag.cache(tokenCache) }

    var resolvedSeq: Int { seq ?? Defaults.config.window }
    var resolvedBatch: Int { batch ?? Defaults.config.streams }

    func loadCorpus() throws -> Corpus {
        guard let data else { return Corpus.builtin(task: task) }
        return try Corpus.load(path: data, cache: cache)
    }
}

extension TrainingTask: ExpressibleByArgument {}

/// `--token-cache DIR` of train, serve, bench and work; the default directory is read from
/// the environment here, in the executable.
enum TokenCacheFlag {
    static func cache(_ flag: String?) -> TokenCache? {
        if let flag { return flag.isEmpty ? nil : TokenCache(directory: URL(fileURLWithPath: flag)) }
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? environment["HOME"].map { URL(fileURLWithPath: $0).appendingPathComponent(".cache") }
        return base.map { TokenCache(directory: $0.appendingPathComponent("recur")) }
    }
}

struct OptimizationFlags: ParsableArguments {
    @Option(help: "Optimizer steps of the whole run (default: \(Defaults.config.steps); resuming: the checkpoint's).")
    var steps: Int?
    @Option(help: "Train for this many epochs instead of --steps.")
    var epochs: Int?
    @Option(help: "Optimizer: sgd, momentum, adagrad, rmsprop or adam (default: \(Defaults.config.optimizer.kind.rawValue)).")
    var optimizer: OptimizerKind?
    @Option(help: "Learning rate (default \(OptimizerKind.adam.defaultLearningRate) for adam; \(OptimizerKind.allCases.filter { $0 != .adam }.map { "\($0.rawValue) \($0.defaultLearningRate)" }.joined(separator: ", "))).")
    var lr: Float?
    @Option(name: .customLong("lr-decay-every"), help: "Multiply the learning rate by --lr-decay every this many steps (default: 0, constant).")
    var lrDecayEvery: Int?
    @Option(name: .customLong("lr-decay"), help: "Step-decay factor of the learning rate (default: \(TrainingConfig.defaultDecayFactor)).")
    var lrDecay: Float?
    @Option(help: "Clip the averaged gradient to this global L2 norm, 0 = off (default: \(Defaults.config.clip)).")
    var clip: Float?
    @Option(help: "Dropout probability between stacked layers and before the head, in [0, 1) (default: 0; PyTorch semantics, off when evaluating and sampling).")
    var dropout: Double?
    @Option(help: "Seed of the initial weights, the dropout masks and the samples printed (default: \(Defaults.config.seed)).")
    var seed: UInt64?

    func validateValues() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be positive, got \(lr)") }
        if let dropout, !(dropout >= 0 && dropout < 1) { throw ValidationError("--dropout must be in [0, 1), got \(dropout)") }
        if let clip, !(clip >= 0 && clip.isFinite) { throw ValidationError("--clip must be ≥ 0 (0 = off), got \(clip)") }
    }
}

/// Where the work runs. Only `--chunk` changes the numbers (it is part of the config).
struct ParallelFlags: ParsableArguments {
    @Option(help: "Worker processes on this machine (1 = in-process, no server; default: cores when more than one).")
    var workers: Int?
    @Option(help: "Threads per worker (default: the machine's cores, divided among the workers).")
    var threads: Int?
    @Option(help: "Streams per gradient chunk, the fixed unit of parallel work (default: batch/4). Equal chunks give bit-identical results for any --threads/--workers.")
    var chunk: Int?
    @Option(name: .customLong("heartbeat-timeout"), help: "With --workers > 1: seconds of silence after which a worker counts as dead.")
    var heartbeatTimeout = 30.0
    @Option(name: .customLong("min-workers"), help: "With --workers W > 1: go on without a lost worker while at least this many remain, bit for bit (default: W, no loss tolerated).")
    var minWorkers: Int?
    @OptionGroup var sharding: ShardFlags

    func validateValues() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1, got \(workers)") }
        try sharding.validateValues()
        try TransportFlags.validateHeartbeatTimeout(heartbeatTimeout)
        if let minWorkers, !(1...split.workers).contains(minWorkers) {
            throw ValidationError("--min-workers must be between 1 and the worker count (\(split.workers)), got \(minWorkers)")
        }
    }

    /// Workers and threads: fill the machine. Default W = cores (one thread each) when
    /// there is more than one core; with only --threads K given, W = cores / K.
    var split: (workers: Int, threads: Int) {
        let cores = Machine.cores
        switch (workers, threads) {
        case let (w?, k?): return (w, k)
        case let (w?, nil): return (w, max(1, cores / w))
        case let (nil, k?): return (max(1, cores / k), k)
        case (nil, nil): return (cores > 1 ? cores : 1, 1)
        }
    }
}

/// Parameter servers, for train (local shard processes) and serve (`--shard-endpoints`).
struct ShardFlags: ParsableArguments {
    @Option(help: "Parameter servers: the weights are cut into this many ranges by bytes, each updated by its own `recur shard` process; any count gives the same weights (default 1: the coordinator).")
    var shards = 1

    func validateValues() throws {
        if shards < 1 { throw ValidationError("--shards must be at least 1, got \(shards)") }
    }
}

struct CheckpointFlags: ParsableArguments {
    @Option(help: "Checkpoint directory of the run, written atomically (\"\" = none).")
    var checkpoint = Defaults.checkpoint
    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every this many steps (0 = only at the end).")
    var checkpointEvery = Defaults.run.checkpointEvery
    @Flag(help: "--resume [DIR]: continue the run saved in DIR (default --checkpoint) with its own model, data and optimizer; --steps, --lr, --lr-decay(-every), --clip and the cadence, parallelism and output flags may change.")
    var resume = false
    @Option(name: .customLong("init-from"), help: "Start a new run from the weights (and config) of this checkpoint directory.")
    var initFrom: String?
    @Flag(help: "Start a new run in a --checkpoint directory that holds another run: the earlier run (with its named and best checkpoints) is moved aside to DIR.replaced-TIME, kept.")
    var force = false
    @Option(help: "Besides DIR (the latest) and the best by validation loss (DIR-step-S-val-L, linked as DIR-best), keep this many recent named checkpoints of evaluations.")
    var keep = Defaults.run.keep
    @Option(name: .customLong("early-stop"), help: "Stop after this many evaluations (--eval-every) in a row without a better validation loss (0 = never).")
    var earlyStop = Defaults.run.earlyStop

    var directory: URL? { checkpoint.isEmpty ? nil : URL(fileURLWithPath: checkpoint) }

    func validateValues(evalEvery: Int) throws {
        if keep < 0 { throw ValidationError("--keep must be ≥ 0, got \(keep)") }
        if earlyStop < 0 { throw ValidationError("--early-stop must be ≥ 0, got \(earlyStop)") }
        if earlyStop > 0 && evalEvery == 0 { throw ValidationError("--early-stop needs --eval-every") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be ≥ 0, got \(checkpointEvery)") }
        if resume && initFrom != nil { throw ValidationError("--resume and --init-from exclude each other") }
        if resume && checkpoint.isEmpty { throw ValidationError("--resume needs a checkpoint directory (--resume DIR)") }
    }
}

struct OutputFlags: ParsableArguments {
    @Option(name: .customLong("eval-every"), help: "Validation loss every this many steps (0 = only at the end).")
    var evalEvery = Defaults.run.evalEvery
    @Option(name: .customLong("eval-streams"), help: "Evaluate the validation split as E contiguous streams (1 = exact per-character loss).")
    var evalStreams = Defaults.run.evalStreams
    @Option(name: .customLong("eval-chars"), help: "Score at most this many characters of the validation split, its first ones (0 = all).")
    var evalChars = Defaults.run.evalCharacters
    @Option(name: .customLong("log-jsonl"), help: "Append one JSON record per step and per evaluation to this file (a new run truncates it).")
    var logJsonl: String?
    @Option(name: .customLong("print-every"), help: "Without a terminal, print the progress line every this many steps.")
    var printEvery = Defaults.printEvery
    @Flag(help: "Print each step's compute/communicate/wait split per worker as well.")
    var verbose = false
    @Option(name: .customLong("sample-every"), help: "Print a sample of --sample-length characters every this many steps (0 = only at the end).")
    var sampleEvery = 0

    func validateValues() throws {
        if evalEvery < 0 { throw ValidationError("--eval-every must be ≥ 0, got \(evalEvery)") }
        if evalStreams < 1 { throw ValidationError("--eval-streams must be at least 1, got \(evalStreams)") }
        if evalChars < 0 { throw ValidationError("--eval-chars must be ≥ 0 (0 = all), got \(evalChars)") }
        if printEvery < 1 { throw ValidationError("--print-every must be at least 1, got \(printEvery)") }
        if sampleEvery < 0 { throw ValidationError("--sample-every must be ≥ 0, got \(sampleEvery)") }
    }
}

/// Sampling flags of `sample`, and of `train`/`serve` for the samples they print.
struct SamplingFlags: ParsableArguments {
    @Option(name: .customLong("sample-length"), help: "Characters to generate (0 = no sample).")
    var sampleLength = Defaults.sampleLength
    @Option(help: "Sampling temperature (> 0; lower is more conservative).")
    var temperature = Defaults.sampler.temperature
    @Option(name: .customLong("top-k"), help: "Draw only from the k most likely characters (0 = all).")
    var topK = Defaults.sampler.topK
    @Option(name: .customLong("top-p"), help: "Draw only from the most likely characters whose probabilities sum to p, in (0, 1] (1 = all).")
    var topP = Defaults.sampler.topP
    @Option(help: "Stop generating once this text has been generated (it is printed).")
    var stop: String?
    @Option(help: "Text to condition on; it is printed before the generated text.")
    var prime = ""
    @Flag(help: "Always take the most likely next character.")
    var argmax = false

    func validateValues() throws {
        guard temperature > 0, temperature.isFinite else { throw ValidationError("--temperature must be positive, got \(temperature)") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0 (0 = off), got \(topK)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        if let stop, stop.isEmpty { throw ValidationError("--stop must not be empty") }
        guard sampleLength >= 0 else { throw ValidationError("--sample-length must be ≥ 0, got \(sampleLength)") }
        try MemoryBudget.requireFlags(MemoryBudget.samplingBytes(parameterCount: 0, length: sampleLength),
                                      for: "--sample-length \(sampleLength)")
    }

    func sampler(seed: UInt64) -> Sampler {
        Sampler(temperature: temperature, argmax: argmax, seed: seed, topK: topK, topP: topP, stop: stop)
    }
}

enum Machine {
    static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }
}

extension MemoryBudget {
    /// `require` for a check made while the command line is parsed (a `validate()`): the
    /// parser keeps only `ValidationError`'s exit code (64), so the refusal travels as one.
    static func requireFlags(_ bytes: Int?, for what: String) throws {
        do {
            try require(bytes, for: what)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
