import ArgumentParser
import Foundation
import Recurrent
import Training

/// What `train` and `serve` start from: the run's config, its corpus, and the corpus path
/// the workers are given. A new run takes the defaults, and `--init-from DIR` that
/// checkpoint's config, with the flags given on top; `--resume` takes the checkpoint's config
/// and lets flags change only what keeps the saved numbers meaningful (`resumable`).
struct RunSetup {
    var config: TrainingConfig
    var corpus: Corpus
    /// The corpus file (absolute), nil for the built-in corpus.
    var dataPath: String?
    /// Steps already done by the resumed run (0 for a new run).
    var completedSteps = 0
    /// A classifier's validation examples from `--val-data`.
    var validation: LabelledExamples?
    /// The resumed run's `--log-jsonl` file, which it goes on appending to by default.
    var savedLogPath: String?

    init(model: ModelFlags, data: DataFlags, optimization: OptimizationFlags, chunk: Int?,
         checkpoints: CheckpointFlags, log: (String) -> Void) throws {
        let start = try Self.startingCheckpoint(checkpoints)
        start?.repairs.forEach(log)
        let base = start?.baseConfig(task: data.task) ?? TrainingConfig()
        if let saved = start?.resumedRun {
            completedSteps = saved.step
            savedLogPath = saved.logPath
        }
        let path = data.data ?? start?.checkpoint.training?.corpusPath
        dataPath = path.map { URL(fileURLWithPath: $0).path }
        let task = data.task ?? base.task
        corpus = try dataPath.map { try Self.load($0, cache: data.cache, log: log) } ?? Corpus.builtin(task: task)
        config = try base.applying(model: model, data: data, optimization: optimization, chunk: chunk, corpus: corpus)
        try start?.requireCompatible(config)
        if let valData = data.valData {
            guard config.isClassifier else { throw ValidationError("--val-data goes with --task classify (a language model holds out the end of --data: --val-fraction)") }
            let labels = try LabelledExamples.split(corpus, validationFraction: 0).train.labels
            validation = try LabelledExamples.read(path: valData, flag: "--val-data", vocabulary: corpus.vocabulary, labels: labels)
            if let v = validation, v.skippedCharacters + v.skippedUnknownLabels + v.skippedEmpty > 0 {
                log("\(valData): skipped \(v.skippedUnknownLabels) example(s) of labels the training data lacks, \(v.skippedEmpty) left empty, and \(v.skippedCharacters) character(s) outside the vocabulary")
            }
        }
    }

    /// The checkpoint `--resume` or `--init-from` names, read; nil for a fresh run.
    static func startingCheckpoint(_ checkpoints: CheckpointFlags) throws -> StartingCheckpoint? {
        if checkpoints.resume, let directory = checkpoints.directory {
            return try StartingCheckpoint.read(directory, for: .resume)
        }
        return try checkpoints.initFrom.map { try StartingCheckpoint.read(URL(fileURLWithPath: $0), for: .initFrom) }
    }

    /// Reads and encodes a corpus file, saying what it does when that takes a while (files of
    /// more than 16 MB).
    static func load(_ path: String, cache: TokenCache?, log: (String) -> Void) throws -> Corpus {
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let announce = bytes > 16 << 20
        if announce { log(String(format: "reading %@ (%.0f MB)…", path, Double(bytes) / 1e6)) }
        let start = Date()
        let corpus = try Corpus.load(path: path, cache: cache, log: log)
        if announce { log(String(format: "corpus ready: %d chars, vocabulary %d, in %.1f s", corpus.count, corpus.vocabulary.count, Date().timeIntervalSince(start))) }
        return corpus
    }

    /// The finished run of `--resume` with no more steps to take.
    var isFinished: Bool { completedSteps > 0 && completedSteps >= config.steps }
}

extension TrainingConfig {
    /// The flags given, on top of this config. Changing --batch resets the chunk to its
    /// default unless --chunk is given; --lr-decay-every alone decays by the default factor.
    func applying(model: ModelFlags, data: DataFlags, optimization o: OptimizationFlags, chunk: Int?,
                  corpus: Corpus) throws -> TrainingConfig {
        var c = applying(model: model, data: data, chunk: chunk)
        if let kind = o.optimizer, kind != c.optimizer.kind {
            c.optimizer = OptimizerConfig(kind: kind, learningRate: o.lr)
        } else if let lr = o.lr {
            c.optimizer.learningRate = lr
        }
        if let every = o.lrDecayEvery {
            if every > 0 && c.learningRateDecayEvery == 0 { c.learningRateDecay = TrainingConfig.defaultDecayFactor }
            c.learningRateDecayEvery = every
        }
        if let decay = o.lrDecay { c.learningRateDecay = decay }
        if c.learningRateDecayEvery == 0 { c.learningRateDecay = 1 }
        c.clip = o.clip ?? c.clip
        c.seed = o.seed ?? c.seed
        if let dropout = o.dropout { c.dropout = dropout > 0 ? dropout : nil }
        c.steps = o.steps ?? c.steps
        try c.validate()
        if let epochs = o.epochs { c.steps = try c.steps(forEpochs: epochs, corpus: corpus) }
        return c
    }

    /// The model and data-layout flags given, on top of this config (bench uses only these).
    func applying(model: ModelFlags, data: DataFlags, chunk: Int?) -> TrainingConfig {
        var c = self
        c.cell = model.cell ?? c.cell
        c.layers = model.layers ?? c.layers
        c.hidden = model.hidden ?? c.hidden
        c.window = data.seq ?? c.window
        c.validationFraction = data.valFraction ?? c.validationFraction
        if let task = data.task { c.task = task == .languageModel ? nil : task }
        if model.bidirectional { c.bidirectional = true }
        if let pool = model.pool { c.pooling = pool == .last ? nil : pool }
        c.maxLength = data.maxLen ?? c.maxLength
        if data.valData != nil { c.validationFraction = 0 }
        if let streams = data.batch, streams != c.streams {
            c.streams = streams
            c.chunkStreams = TrainingConfig.defaultChunkStreams(streams: max(1, streams))
        }
        if let chunk { c.chunkStreams = chunk }
        return c
    }

    /// The full memory check of a run on this machine: parameters, gradients, optimizer
    /// state, chunk slabs and workspaces of one process's share of the streams.
    /// `workersElsewhere`: the streams are split among that many worker processes on other
    /// machines (serve); train's local workers share this machine and count as one.
    func requireMemory(vocabularySize: Int, workersElsewhere: Int = 1) throws {
        let workers = max(1, workersElsewhere)
        let share = max(chunkStreams, streams / workers + (streams % workers == 0 ? 0 : 1))
        let bytes = MemoryBudget.trainingBytes(cell: cell, vocabularySize: vocabularySize, hiddenSize: hidden, layers: layers,
                                               streams: share, window: window, chunkStreams: chunkStreams)
        let split = workers > 1 ? " --workers \(workers)" : ""
        try MemoryBudget.require(bytes, for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden) --batch \(streams) --seq \(window)\(split)")
    }
}
