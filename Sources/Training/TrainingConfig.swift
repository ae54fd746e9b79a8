import Foundation
import Recurrent

/// Everything that determines the numbers a run produces: model, data layout, optimisation,
/// seed. Two runs with equal configs on the same corpus give identical weights, whatever
/// their threads and workers. It travels to workers as JSON and is stored in checkpoints.
public struct TrainingConfig: Codable, Equatable, Sendable {
    // These initial values are the run defaults everywhere (`recur train` with no flags);
    // the CLI shows them from here.
    public var cell: CellType = .lstm
    public var layers = 2
    public var hidden = 256
    /// N, the global number of streams (the batch).
    public var streams = 64
    /// T, the BPTT window.
    public var window = 64
    /// Total optimizer steps of the run (resume continues up to it).
    public var steps = 500
    public var optimizer = OptimizerConfig(kind: .adam)
    /// Step decay of the learning rate: multiply by `learningRateDecay` every
    /// `learningRateDecayEvery` steps (0 = constant).
    public var learningRateDecayEvery = 0
    public var learningRateDecay: Float = 1
    /// Global L2 norm threshold for the averaged gradient (0 = off).
    public var clip: Float = 5
    public var seed: UInt64 = 1234
    public var validationFraction = 0.1
    /// Streams per gradient chunk, the fixed unit of parallel work (see `GradientEngine`):
    /// `defaultChunkStreams(streams:)` unless set.
    public var chunkStreams = TrainingConfig.defaultChunkStreams(streams: 64)
    /// Dropout probability between stacked layers and before the head (`Dropout`); nil = none.
    /// Optional so that configs without dropout keep their JSON (and checkpoints) as before.
    public var dropout: Double?
    /// What the run learns; nil = the character language model. With `.classify`, `streams`
    /// is the number of examples per step and `chunkStreams` the examples per chunk; `window`
    /// is unused. Optional, like the two below, so language-model configs keep their JSON.
    public var task: TrainingTask?
    /// Classification: inputs longer than this are cut to their first `maxLength` characters
    /// (nil = `defaultMaxLength`).
    public var maxLength: Int?
    /// Classification: bidirectional layers (nil = no).
    public var bidirectional: Bool?
    /// Classification: what the head reads of the top layer (nil = `.last`, the final h).
    public var pooling: Pooling?

    public init() {}

    public static let defaultMaxLength = 256
    public var isClassifier: Bool { task == .classify }
    public var resolvedMaxLength: Int { maxLength ?? Self.defaultMaxLength }
    /// The first element of the early run a worker hands over before the rest of its gradient
    /// (`GradientEngine.earlySlices`: a language model of two layers or more); nil without one
    /// (one layer, or a classifier, whose backward is short).
    public func earlyElements(of layout: ParameterLayout) -> Int? {
        guard !isClassifier, let slices = GradientEngine.earlySlices(of: layout) else { return nil }
        return layout.elements(of: slices).lowerBound
    }

    /// Predictions per stream (example) and step: T for a language model, 1 for a classifier.
    public var predictionsPerStream: Int { isClassifier ? 1 : window }
    /// What the loss of a step averages over: N·T predictions of a language model, N examples
    /// of a classifier (the gradient sum is divided by it).
    public var predictionsPerStep: Int { streams * predictionsPerStream }

    /// The masks of this run's dropout (seeded by `seed`), nil without dropout.
    public var dropoutMasks: Dropout? {
        guard let p = dropout, p > 0 else { return nil }
        return Dropout(probability: p, seed: seed)
    }

    /// The step-decay factor the CLI offers once `learningRateDecayEvery` is set.
    public static let defaultDecayFactor: Float = 0.5

    /// The model of this config: a language model, or with `labelCount` a classifier.
    public func model(vocabularySize: Int, labelCount: Int? = nil) -> ModelConfig {
        ModelConfig(cell: cell, vocabularySize: vocabularySize, hiddenSize: hidden, layerCount: layers,
                    bidirectional: bidirectional ?? false, labelCount: labelCount, pooling: pooling ?? .last)
    }

    public var schedule: LearningRateSchedule {
        LearningRateSchedule(base: optimizer.learningRate, decayEvery: learningRateDecayEvery,
                             decayFactor: learningRateDecay)
    }

    /// The default chunk: a quarter of the streams (so that up to 4 workers or threads get
    /// whole chunks), at least 1, and a divisor of N.
    public static func defaultChunkStreams(streams: Int) -> Int {
        var chunk = max(1, streams / 4)
        while streams % chunk != 0 { chunk -= 1 }
        return chunk
    }

    /// The steps of `epochs` whole epochs of `corpus` with this config's data layout.
    public func steps(forEpochs epochs: Int, corpus: Corpus) throws -> Int {
        if isClassifier { return epochs * (try RunPlan(config: self, corpus: corpus)).stepsPerEpoch }
        try corpus.requireTrainingLength(streams: streams, window: window, validationFraction: validationFraction)
        let train = Corpus.trainCount(total: corpus.count, validationFraction: validationFraction)
        return epochs * StreamLayout(trainCount: train, streams: streams, window: window).stepsPerEpoch
    }

    /// Checks values a user can get wrong; the error names the field and the rule.
    public func validate() throws {
        func check(_ ok: Bool, _ field: ConfigField, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidValue(field, value: "\(value)", rule: rule) }
        }
        try check(layers >= 1, .layers, layers, "at least 1")
        try check(hidden >= 1, .hidden, hidden, "at least 1")
        try check(streams >= 1, .streams, streams, "at least 1")
        try check(window >= 1, .window, window, "at least 1")
        try check(steps >= 1, .steps, steps, "at least 1")
        try check(optimizer.learningRate > 0 && optimizer.learningRate.isFinite, .learningRate,
                  optimizer.learningRate, "a positive number")
        try check(clip >= 0 && clip.isFinite, .clip, clip, "≥ 0 (0 = off)")
        try check(validationFraction >= 0 && validationFraction < 1, .validationFraction, validationFraction, "in [0, 1)")
        try check(learningRateDecayEvery >= 0, .learningRateDecayEvery, learningRateDecayEvery, "≥ 0")
        try check(learningRateDecay > 0 && learningRateDecay <= 1, .learningRateDecay, learningRateDecay, "in (0, 1]")
        try check(chunkStreams >= 1 && streams % chunkStreams == 0, .chunkStreams, chunkStreams,
                  "a divisor of the batch \(streams)")
        if let dropout { try check(dropout >= 0 && dropout < 1, .dropout, dropout, "in [0, 1)") }
        if let maxLength { try check(maxLength >= 1, .maxLength, maxLength, "at least 1") }
        if !isClassifier {
            if bidirectional == true { throw TrainingError.missingSetting(.bidirectional, requires: .task) }
            if maxLength != nil { throw TrainingError.missingSetting(.maxLength, requires: .task) }
            if pooling != nil { throw TrainingError.missingSetting(.pooling, requires: .task) }
        } else if let dropout, dropout > 0 {
            throw TrainingError.invalidValue(.dropout, value: "\(dropout)", rule: "0 for --task classify (dropout is for the language model)")
        }
    }

    /// Canonical JSON (sorted keys): equal configs give equal bytes.
    public func canonicalJSON() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    public static func fromJSON(_ text: String) throws -> TrainingConfig {
        do {
            return try JSONDecoder().decode(TrainingConfig.self, from: Data(text.utf8))
        } catch {
            throw TrainingError.unreadableConfig("\(error)")
        }
    }
}

/// A setting of a run, named for errors; the executable maps each to its flag.
public enum ConfigField: String, Sendable, CaseIterable {
    case cell, layers, hidden, streams, window, steps, optimizer, learningRate, clip, validationFraction
    case learningRateDecayEvery, learningRateDecay, chunkStreams, seed, dropout
    case task, maxLength, bidirectional, pooling
    case checkpointDirectory, resume, initFrom, workers
}

/// What a run learns (`--task`).
public enum TrainingTask: String, Codable, CaseIterable, Sendable {
    /// Next character of a text, many-to-many (the default; stored as no task).
    case languageModel = "lm"
    /// One label per line of `label<TAB>text`, many-to-one.
    case classify
}

extension TrainingConfig {
    /// What may change when a run is resumed: the length and schedule of the rest of the run.
    /// Everything else (model, data layout, optimizer kind, seed) keeps its saved value.
    public static let resumableFields: Set<ConfigField> = [.steps, .learningRate, .learningRateDecayEvery, .learningRateDecay, .clip]

    /// The value of a config field as the flag takes it ("lstm", "0.002"); nil for fields
    /// that are not part of the config (checkpoint directory, workers, …).
    public func value(of field: ConfigField) -> String? {
        switch field {
        case .cell: return cell.rawValue
        case .layers: return "\(layers)"
        case .hidden: return "\(hidden)"
        case .streams: return "\(streams)"
        case .window: return "\(window)"
        case .steps: return "\(steps)"
        case .optimizer: return optimizer.kind.rawValue
        case .learningRate: return "\(optimizer.learningRate)"
        case .clip: return "\(clip)"
        case .validationFraction: return "\(validationFraction)"
        case .learningRateDecayEvery: return "\(learningRateDecayEvery)"
        case .learningRateDecay: return "\(learningRateDecay)"
        case .chunkStreams: return "\(chunkStreams)"
        case .seed: return "\(seed)"
        case .dropout: return "\(dropout ?? 0)"
        case .task: return (task ?? .languageModel).rawValue
        case .maxLength: return isClassifier ? "\(resolvedMaxLength)" : nil
        case .bidirectional: return "\(bidirectional ?? false)"
        case .pooling: return isClassifier ? (pooling ?? .last).rawValue : nil
        case .checkpointDirectory, .resume, .initFrom, .workers: return nil
        }
    }
}

/// Errors of the training layer a user can cause or meet.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// `field` has `value`, which breaks `rule` ("at least 1").
    case invalidValue(ConfigField, value: String, rule: String)
    /// `field` cannot be used without `requires`, or with it (`conflicts`).
    case missingSetting(ConfigField, requires: ConfigField)
    case unreadableConfig(String)
    /// `field` names `path`, which exists and is not a directory.
    case notADirectory(ConfigField, path: String)
    /// An output file (a log) that cannot be created or opened for writing.
    case unwritable(path: String)
    case checkpoint(String)
    /// `--resume` names a directory without a training checkpoint.
    case nothingToResume(path: String)
    /// The config asks `field` to be `requested` where the checkpoint at `path` that the run
    /// starts from has `saved`: a resumed run (`resumed`) or a run from its weights may not
    /// change it (`StartingCheckpoint.requireCompatible`).
    case startMismatch(ConfigField, saved: String, requested: String, path: String, resumed: Bool)
    case diverged(step: Int, loss: Double, lastCheckpoint: String?)
    case vocabulary(String)

    public var description: String {
        switch self {
        case .invalidValue(let field, let value, let rule): return "\(field.rawValue) must be \(rule), got \(value)"
        case .missingSetting(let field, let requires): return "\(field.rawValue) needs \(requires.rawValue)"
        case .unreadableConfig(let m): return "unreadable training config: \(m)"
        case .notADirectory(let field, let path): return "\(field.rawValue) \(path) exists and is not a directory"
        case .unwritable(let path): return "cannot open \(path) for writing"
        case .checkpoint(let m): return m
        case .nothingToResume(let path): return "nothing to resume: \(path) holds no training checkpoint"
        case .startMismatch(let field, let saved, let requested, let path, let resumed):
            return "\(resumed ? "checkpoint \(path) is of another run" : "\(path) is a checkpoint of another model"): \(field.rawValue) \(saved) ≠ \(requested) (saved ≠ requested)"
        case .diverged(let step, let loss, let last):
            let keep = last.map { "; the last good checkpoint is \($0)" } ?? "; no checkpoint was written"
            return "training diverged at step \(step) (loss \(loss))\(keep)"
        case .vocabulary(let m): return m
        }
    }
}
