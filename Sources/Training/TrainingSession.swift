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
    /// Score the validation split when the run ends (benchmarks turn it off).
    public var evaluateAtEnd = true

    public init() {}
}

/// The state a run carries between steps, shared by the in-process trainer and the
/// coordinator: data, parameters + optimizer (`ParameterUpdate`), step counter, resume,
/// evaluation and checkpoints. Gradients come from elsewhere (a local `GradientEngine` or
/// the workers).
public final class TrainingSession {
    public let config: TrainingConfig
    public let options: RunOptions
    public let corpus: Corpus
    public let model: ModelConfig
    public let layout: ParameterLayout
    public let train: [Int32]
    public let validation: [Int32]
    public let streamLayout: StreamLayout
    public let update: ParameterUpdate
    /// The next step to run (0-based); equals the steps completed.
    public private(set) var step: Int
    /// Carried state (L, N, H) restored from a checkpoint, to seed the engines.
    public let restoredState: (h: [Float], c: [Float])?
    public private(set) var random: SeededGenerator
    public private(set) var lastCheckpoint: String?

    public init(config: TrainingConfig, corpus: Corpus, options: RunOptions) throws {
        try config.validate()
        try corpus.requireTrainingLength(streams: config.streams, window: config.window,
                                         validationFraction: config.validationFraction)
        self.config = config
        self.options = options
        self.corpus = corpus
        model = config.model(vocabularySize: corpus.vocabulary.count)
        layout = ParameterLayout(model)
        (train, validation) = corpus.split(validationFraction: config.validationFraction)
        streamLayout = StreamLayout(trainCount: train.count, streams: config.streams, window: config.window)

        if let directory = options.checkpointDirectory {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw TrainingError.invalidConfig("--checkpoint-dir \(directory.path) exists and is not a directory")
            }
        }
        var initial = ParameterInitializer.initialize(layout, seed: config.seed)
        var random = SeededGenerator(seed: config.seed ^ 0x5EED)
        var step = 0
        var restored: (h: [Float], c: [Float])?
        var optimizerState: (Int, [(name: String, values: [Float])])?
        if options.resume {
            guard let directory = options.checkpointDirectory else {
                throw TrainingError.invalidConfig("--resume needs --checkpoint-dir")
            }
            guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("state.json").path) else {
                throw TrainingError.checkpoint("nothing to resume: \(directory.path) holds no training checkpoint")
            }
            let checkpoint = try Checkpoint.read(from: directory)
            guard let saved = checkpoint.training else { throw TrainingError.checkpoint("\(directory.path) has no training state") }
            try Self.requireCompatible(saved: saved.config, requested: config, path: directory.path)
            guard saved.corpusDigest == corpus.digest else {
                throw TrainingError.checkpoint("checkpoint \(directory.path) was trained on another corpus (digest \(saved.corpusDigest.prefix(12))…, this one \(corpus.digest.prefix(12))…)")
            }
            initial = checkpoint.parameters
            step = saved.step
            random = try SeededGenerator(state: saved.randomState)
            restored = (saved.hiddenH, saved.hiddenC)
            optimizerState = (saved.optimizerStepCount, saved.optimizerBuffers)
            lastCheckpoint = directory.path
        } else if let source = options.initFrom {
            let checkpoint = try Checkpoint.read(from: source)
            guard checkpoint.model == model else {
                throw TrainingError.checkpoint("--init-from \(source.path) is a checkpoint of another model: \(Checkpoint.modelJSON(checkpoint.model)), this run is \(Checkpoint.modelJSON(model))")
            }
            guard checkpoint.vocabulary == corpus.vocabulary else {
                throw TrainingError.checkpoint("--init-from \(source.path) has another vocabulary than \(corpus.name)")
            }
            initial = checkpoint.parameters
        }
        update = ParameterUpdate(layout: layout, optimizer: config.optimizer, schedule: config.schedule,
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

    /// A resumed run must have the same config except the total step count.
    static func requireCompatible(saved: TrainingConfig, requested: TrainingConfig, path: String) throws {
        var a = saved, b = requested
        a.steps = 0
        b.steps = 0
        guard a != b else { return }
        let mirrorA = Mirror(reflecting: a), mirrorB = Mirror(reflecting: b)
        let differences = zip(mirrorA.children, mirrorB.children).compactMap { x, y -> String? in
            "\(x.value)" == "\(y.value)" ? nil : "\(x.label ?? "?") \(x.value) ≠ \(y.value)"
        }
        throw TrainingError.checkpoint("checkpoint \(path) is of another run: \(differences.joined(separator: ", ")) (saved ≠ requested)")
    }

    public var isFinished: Bool { step >= config.steps }
    public var position: (epoch: Int, stepInEpoch: Int) { streamLayout.position(globalStep: step) }
    public var tokensPerStep: Int { config.streams * config.window }

    /// Applies the coordinator step for the current step and advances. Throws when the loss
    /// or gradient is not finite or the loss exploded (the update is not applied then).
    public func apply(gradientSum: UnsafeMutablePointer<Float>, lossSum: Double,
                      tokenCount: Int) throws -> ParameterUpdate.Report {
        let loss = lossSum / Double(tokenCount)
        let limit = 3 * log(Double(model.vocabularySize)) + 1
        guard loss.isFinite, loss < limit else {
            throw TrainingError.diverged(step: step + 1, loss: loss, lastCheckpoint: lastCheckpoint)
        }
        let report = update.apply(gradientSum: gradientSum, tokenCount: tokenCount, step: step)
        guard report.gradientNorm.isFinite else {
            throw TrainingError.diverged(step: step + 1, loss: loss, lastCheckpoint: lastCheckpoint)
        }
        step += 1
        return report
    }

    /// The end-of-run evaluation, unless turned off.
    public func finalEvaluation() -> Evaluator.Result? {
        options.evaluateAtEnd ? evaluate() : nil
    }

    public func evaluate() -> Evaluator.Result? {
        Evaluator.evaluate(model: model, parameters: UnsafePointer(update.parameters.baseAddress!),
                           tokens: validation, window: config.window, streams: options.evalStreams)
    }

    public var wantsEvaluation: Bool { options.evalEvery > 0 && step % options.evalEvery == 0 && !isFinished }
    public var wantsCheckpoint: Bool {
        options.checkpointDirectory != nil && (isFinished || (options.checkpointEvery > 0 && step % options.checkpointEvery == 0))
    }

    /// Writes the checkpoint of the current step with the given carried state (L, N, H).
    @discardableResult
    public func writeCheckpoint(hiddenH: [Float], hiddenC: [Float]) throws -> String? {
        guard let directory = options.checkpointDirectory else { return nil }
        let state = Checkpoint.TrainingState(
            config: config, step: step, corpusDigest: corpus.digest, randomState: random.state,
            optimizerStepCount: update.optimizer.stepCount, optimizerBuffers: update.optimizer.stateBuffers,
            hiddenH: hiddenH, hiddenC: hiddenC)
        let checkpoint = Checkpoint(model: model, vocabulary: corpus.vocabulary, parameters: update.values, training: state)
        try checkpoint.write(to: directory)
        lastCheckpoint = directory.path
        return directory.path
    }

    public func startInfo(mode: String) -> StartInfo {
        StartInfo(corpusName: corpus.name, corpusCharacters: corpus.count, vocabularySize: model.vocabularySize,
                  trainCharacters: train.count, validationCharacters: validation.count,
                  parameterCount: layout.count, stepsPerEpoch: streamLayout.stepsPerEpoch,
                  firstStep: step, steps: config.steps, mode: mode, blasCore: BLASInfo.coreName)
    }
}
