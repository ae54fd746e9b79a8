import Foundation
import Recurrent

/// What a run does besides the math: evaluation cadence, checkpoints, parallelism.
public struct RunOptions: Sendable {
    public var threads = 1
    public var evalEvery = 0
    public var evalStreams = 1
    public var checkpointDirectory: URL?
    public var checkpointEvery = 0
    public var resume = false
    public var initFrom: URL?
    /// The run's `--log-jsonl` file (absolute), recorded in its checkpoints.
    public var logPath: String?
    /// Score the validation split when the run ends (benchmarks turn it off).
    public var evaluateAtEnd = true
    /// Named checkpoints after evaluations (`CheckpointHistory`): the best one and this many
    /// recent others are kept.
    public var keep = 0
    /// Stop after this many evaluations in a row without a new best validation loss (0 = never).
    public var earlyStop = 0
    /// Score at most this many characters of the validation split, its first ones (0 = all).
    /// The default keeps evaluations of big corpora to seconds; smaller splits are whole.
    public var evalCharacters = RunOptions.defaultEvalCharacters
    public static let defaultEvalCharacters = 1_000_000
    /// Seconds between two progress reports (`.evaluating`) of one evaluation.
    public var evaluationProgressInterval = 1.0

    public init() {}
}

/// The numbers a run carries between steps besides the hidden state: its plan (model, data),
/// the parameters and optimizer (`ParameterUpdate`), the step counter and the data RNG,
/// started fresh, from `--init-from` weights, or from a checkpoint (`resume`). The
/// `TrainingLoop` advances it.
public final class TrainingSession {
    public let plan: RunPlan
    public let options: RunOptions
    public let corpus: Corpus
    public let update: ParameterUpdate
    /// The next step to run (0-based); equals the steps completed.
    public internal(set) var step: Int
    /// Carried state (L, N, H) read from the resumed checkpoint; the loop takes it over.
    public let restoredState: (h: [Float], c: [Float])?
    public private(set) var random: SeededGenerator
    public internal(set) var lastCheckpoint: String?
    /// What starting had to do, one line each, which the loop reports: repairs of the checkpoint
    /// directory when resuming (a half-replaced checkpoint restored, leftovers of dead writers
    /// removed), or a language model's layers copied into a classifier (`--init-from`).
    public private(set) var startNotes: [String] = []

    public var config: TrainingConfig { plan.config }
    public var model: ModelConfig { plan.model }
    public var layout: ParameterLayout { plan.layout }
    public var train: TokenStore { plan.train }
    public var validation: TokenStore { plan.validation }
    public var streamLayout: StreamLayout? { plan.streamLayout }

    /// `validation`: a classifier's validation examples from another file (`--val-data`).
    public convenience init(config: TrainingConfig, corpus: Corpus, options: RunOptions, validation: LabelledExamples? = nil) throws {
        try self.init(plan: RunPlan(config: config, corpus: corpus, validation: validation), corpus: corpus, options: options)
    }

    /// A session of a plan made beforehand (the executable checks the plan's worker and shard
    /// counts before anything starts).
    public init(plan: RunPlan, corpus: Corpus, options: RunOptions) throws {
        self.plan = plan
        let config = plan.config
        self.options = options
        self.corpus = corpus
        let model = plan.model

        if let directory = options.checkpointDirectory {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw TrainingError.notADirectory(.checkpointDirectory, path: directory.path)
            }
        }
        var initial = ParameterInitializer.initialize(plan.layout, seed: config.seed)
        var random = SeededGenerator(seed: config.seed ^ 0x5EED)
        var step = 0
        var restored: (h: [Float], c: [Float])?
        var optimizerState: (Int, [(name: String, values: [Float])])?
        if options.resume {
            guard let directory = options.checkpointDirectory else {
                throw TrainingError.missingSetting(.resume, requires: .checkpointDirectory)
            }
            startNotes = try Checkpoint.recover(directory)
            guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("state.json").path) else {
                throw TrainingError.nothingToResume(path: directory.path)
            }
            let checkpoint = try Checkpoint.read(from: directory)
            guard let saved = checkpoint.training else { throw TrainingError.checkpoint("\(directory.path) has no training state") }
            try Self.requireCompatible(saved: saved.config, requested: config, path: directory.path)
            guard saved.corpusDigest == corpus.digest else {
                throw TrainingError.checkpoint("checkpoint \(directory.path) was trained on another corpus (digest \(saved.corpusDigest.prefix(12))…, \(corpus.name) \(corpus.digest.prefix(12))…): give --data the run's corpus")
            }
            initial = checkpoint.parameters
            step = saved.step
            random = try SeededGenerator(state: saved.randomState)
            restored = (saved.hiddenH, saved.hiddenC)
            optimizerState = (saved.optimizerStepCount, saved.optimizerBuffers)
            lastCheckpoint = directory.path
        } else if let source = options.initFrom {
            let checkpoint = try Checkpoint.read(from: source)
            if plan.classification != nil, checkpoint.model.labelCount == nil {
                let report = try LanguageModelTransfer.copy(from: checkpoint, into: &initial, layout: plan.layout,
                                                            vocabulary: corpus.vocabulary, path: source.path)
                startNotes.append("started the recurrent layers from the language model in \(source.path): \(report.tensors) tensors, \(report.scalars) values; the head starts fresh"
                                 + (report.unseenCharacters > 0 ? "; \(report.unseenCharacters) character(s) it never saw keep fresh input weights" : ""))
            } else {
                var saved = checkpoint.model
                saved.pooling = model.pooling   // what the head reads may change; the weights stay
                guard saved == model else {
                    throw TrainingError.checkpoint("\(source.path) is a checkpoint of another model: \(Checkpoint.modelJSON(checkpoint.model)), this run is \(Checkpoint.modelJSON(model))")
                }
                guard checkpoint.labels == (plan.classification?.labels ?? []) else {
                    throw TrainingError.checkpoint("\(source.path) classifies into other labels than \(corpus.name) has")
                }
                guard checkpoint.vocabulary == corpus.vocabulary else {
                    throw TrainingError.checkpoint("\(source.path) has another vocabulary than \(corpus.name)")
                }
                initial = checkpoint.parameters
            }
        }
        update = ParameterUpdate(layout: plan.layout, optimizer: config.optimizer, schedule: config.schedule,
                                 clip: config.clip, initial: initial)
        if let (count, buffers) = optimizerState {
            do {
                try update.optimizer.restore(stepCount: count, buffers: buffers)
            } catch {
                throw TrainingError.checkpoint("optimizer state in \(options.checkpointDirectory!.path): \(error)")
            }
        }
        self.step = step
        self.random = random
        restoredState = restored
    }

    /// A resumed run must have the same config except what may change between the parts of
    /// a run: the total step count, the learning rate and its decay, the clip threshold.
    /// The error lists the differing fields as `name saved ≠ requested`.
    static func requireCompatible(saved: TrainingConfig, requested: TrainingConfig, path: String) throws {
        let differences = ConfigField.allCases.compactMap { field -> String? in
            guard !TrainingConfig.resumableFields.contains(field), let a = saved.value(of: field), let b = requested.value(of: field), a != b else { return nil }
            return "\(field.rawValue) \(a) ≠ \(b)"
        }
        guard !differences.isEmpty else { return }
        throw TrainingError.checkpoint("checkpoint \(path) is of another run: \(differences.joined(separator: ", ")) (saved ≠ requested)")
    }

    public var isFinished: Bool { step >= config.steps }
    public var position: (epoch: Int, stepInEpoch: Int) { plan.position(globalStep: step) }
    public var tokensPerStep: Int { plan.tokensPerStep }

    /// The validation characters an evaluation scores: the split, capped by `evalCharacters`
    /// (a classifier: every validation example).
    public var evaluatedCharacters: Int {
        if let c = plan.classification { return c.validation.count }
        return options.evalCharacters > 0 ? min(validation.count, options.evalCharacters) : validation.count
    }

    /// Validation loss of the current weights (over `evaluatedCharacters`); a classifier's
    /// with its metrics. `progress` hears the characters scored so far, now and then.
    public func evaluate(progress: ((Int) -> Void)? = nil) -> Evaluator.Result? {
        if let c = plan.classification {
            return ClassifierEvaluator.evaluate(model: model, parameters: UnsafePointer(update.parameters.baseAddress!),
                                                examples: c.validation, maxLength: config.resolvedMaxLength,
                                                majorityLabel: c.train.majorityLabel)
        }
        let tokens = validation.slice(0..<evaluatedCharacters)
        return Evaluator.evaluate(model: model, parameters: UnsafePointer(update.parameters.baseAddress!),
                                  tokens: tokens, window: config.window, streams: options.evalStreams, progress: progress)
    }

    /// Writes the checkpoint of the current step with the carried state `state` (L, N, H) to
    /// `target`, by default the run's checkpoint directory (which it then names as the last).
    func writeCheckpoint(state: CarriedState, to target: URL? = nil) throws -> String? {
        guard let directory = target ?? options.checkpointDirectory else { return nil }
        let training = Checkpoint.TrainingState(
            config: config, step: step, corpusDigest: corpus.digest, randomState: random.state,
            optimizerStepCount: update.optimizer.stepCount, optimizerBuffers: update.optimizer.stateBuffers,
            hiddenH: state.values("h"), hiddenC: model.cell.hasCellState ? state.values("c") : [],
            corpusPath: corpus.name == Corpus.builtinName ? nil : URL(fileURLWithPath: corpus.name).path,
            logPath: options.logPath)
        let checkpoint = Checkpoint(model: model, vocabulary: corpus.vocabulary, parameters: update.values,
                                    labels: plan.classification?.labels ?? [], training: training)
        try checkpoint.write(to: directory)
        if target == nil { lastCheckpoint = directory.path }
        return directory.path
    }

    public func startInfo(mode: String) -> StartInfo {
        StartInfo(corpusName: corpus.name, corpusCharacters: corpus.count, vocabularySize: model.vocabularySize,
                  trainCharacters: plan.classification?.train.count ?? train.count,
                  validationCharacters: plan.classification?.validation.count ?? validation.count,
                  evaluatedCharacters: evaluatedCharacters,
                  parameterCount: layout.count, stepsPerEpoch: plan.stepsPerEpoch,
                  firstStep: step, steps: config.steps, mode: mode, kernelLevel: KernelLevel.current.description,
                  labelCount: model.labelCount,
                  truncatedExamples: plan.classification?.train.truncatedCount(maxLength: config.resolvedMaxLength) ?? 0,
                  maxLength: config.resolvedMaxLength)
    }
}
