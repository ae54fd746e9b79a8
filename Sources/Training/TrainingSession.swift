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

    /// `validation`: a classifier's validation examples from another file (`--val-data`).
    public convenience init(config: TrainingConfig, corpus: Corpus, options: RunOptions, validation: LabelledExamples? = nil) throws {
        try self.init(plan: RunPlan(config: config, corpus: corpus, validation: validation), corpus: corpus, options: options)
    }

    /// A session of a plan made beforehand (the executable checks the plan's worker and shard
    /// counts before anything starts). The checkpoint `options` name to resume or to start
    /// from is read and checked by `StartingCheckpoint`.
    public init(plan: RunPlan, corpus: Corpus, options: RunOptions) throws {
        self.plan = plan
        self.options = options
        self.corpus = corpus
        let config = plan.config
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
        if let start = try StartingCheckpoint.read(for: options) {
            startNotes = start.repairs
            try start.requireCompatible(config)
            try start.requireSameCorpus(corpus)
            if let saved = start.resumedRun {
                initial = start.checkpoint.parameters
                step = saved.step
                random = try SeededGenerator(state: saved.randomState)
                restored = (saved.hiddenH, saved.hiddenC)
                optimizerState = (saved.optimizerStepCount, saved.optimizerBuffers)
                lastCheckpoint = start.path
            } else {
                let (weights, note) = try start.weights(for: plan, corpus: corpus, initialized: initial)
                initial = weights
                if let note { startNotes.append(note) }
            }
        }
        update = ParameterUpdate(layout: plan.layout, optimizer: config.optimizer, schedule: config.schedule,
                                 clip: config.clip, initial: initial)
        if let (count, buffers) = optimizerState {
            do {
                try update.optimizer.restore(stepCount: count, buffers: buffers)
            } catch {
                throw TrainingError.checkpoint("optimizer state in \(lastCheckpoint ?? ""): \(error)")
            }
        }
        self.step = step
        self.random = random
        restoredState = restored
    }

    public var isFinished: Bool { step >= config.steps }
    public var position: (epoch: Int, stepInEpoch: Int) { plan.position(globalStep: step) }
    public var tokensPerStep: Int { plan.tokensPerStep }

    /// The validation characters an evaluation scores: the split, capped by `evalCharacters`
    /// (a classifier: every validation example).
    public var evaluatedCharacters: Int {
        switch plan.task {
        case .languageModel(let data):
            return options.evalCharacters > 0 ? min(data.validation.count, options.evalCharacters) : data.validation.count
        case .classifier(let data):
            return data.validation.count
        }
    }

    /// Validation loss of the current weights (over `evaluatedCharacters`); a classifier's
    /// with its metrics. `progress` hears the characters scored so far, now and then.
    public func evaluate(progress: ((Int) -> Void)? = nil) -> Evaluator.Result? {
        let parameters = UnsafePointer(update.parameters.baseAddress!)
        switch plan.task {
        case .languageModel(let data):
            return Evaluator.evaluate(model: model, parameters: parameters, tokens: data.validation.slice(0..<evaluatedCharacters),
                                      window: config.window, streams: options.evalStreams, progress: progress)
        case .classifier(let data):
            return ClassifierEvaluator.evaluate(model: model, parameters: parameters, examples: data.validation,
                                                maxLength: config.resolvedMaxLength, majorityLabel: data.train.majorityLabel)
        }
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
                                    labels: plan.labels, training: training)
        try checkpoint.write(to: directory)
        if target == nil { lastCheckpoint = directory.path }
        return directory.path
    }

    public func startInfo(mode: String) -> StartInfo {
        let (train, validation, truncated): (Int, Int, Int)
        switch plan.task {
        case .languageModel(let data): (train, validation, truncated) = (data.train.count, data.validation.count, 0)
        case .classifier(let data):
            (train, validation) = (data.train.count, data.validation.count)
            truncated = data.train.truncatedCount(maxLength: config.resolvedMaxLength)
        }
        return StartInfo(corpusName: corpus.name, corpusCharacters: corpus.count, vocabularySize: model.vocabularySize,
                         trainCharacters: train, validationCharacters: validation, evaluatedCharacters: evaluatedCharacters,
                         parameterCount: layout.count, stepsPerEpoch: plan.stepsPerEpoch,
                         firstStep: step, steps: config.steps, mode: mode, kernelLevel: KernelLevel.current.description,
                         labelCount: model.labelCount, truncatedExamples: truncated, maxLength: config.resolvedMaxLength)
    }
}
