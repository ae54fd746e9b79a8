import Foundation

/// One record per optimizer step: the greppable log line and the `--log-jsonl` record.
/// Times are seconds; `compute` is forward+backward (+ local reduction), `communicate` is
/// encode + send + receive + decode, `wait` is time spent waiting for the slowest worker.
public struct StepRecord: Codable, Sendable {
    public var step: Int                  // 1-based: steps completed after this one
    public var epoch: Int
    public var loss: Double               // mean nats per predicted character
    public var gradientNorm: Double
    public var learningRate: Float
    public var tokens: Int
    public var tokensPerSecond: Double
    public var stepSeconds: Double
    public var computeSeconds: Double
    public var communicateSeconds: Double
    public var waitSeconds: Double
    public var workers: [WorkerTiming]?
    /// Distributed runs: what `--balance` did in this step.
    public var balancing: BalancingCounts?

    public init(step: Int, epoch: Int, loss: Double, gradientNorm: Double, learningRate: Float, tokens: Int,
                stepSeconds: Double, computeSeconds: Double, communicateSeconds: Double = 0,
                waitSeconds: Double = 0, workers: [WorkerTiming]? = nil, balancing: BalancingCounts? = nil) {
        self.balancing = balancing
        self.step = step
        self.epoch = epoch
        self.loss = loss
        self.gradientNorm = gradientNorm
        self.learningRate = learningRate
        self.tokens = tokens
        self.tokensPerSecond = Double(tokens) / stepSeconds
        self.stepSeconds = stepSeconds
        self.computeSeconds = computeSeconds
        self.communicateSeconds = communicateSeconds
        self.waitSeconds = waitSeconds
        self.workers = workers
    }
}

/// What `--balance on` did: reassignments by measured speed (and the chunks that changed
/// owner), and chunks computed a second time by an idle worker within a step. For one step, or
/// summed over a run.
public struct BalancingCounts: Codable, Sendable, Equatable {
    public var rebalances = 0
    public var movedChunks = 0
    public var reissuedChunks = 0

    public init(rebalances: Int = 0, movedChunks: Int = 0, reissuedChunks: Int = 0) {
        self.rebalances = rebalances
        self.movedChunks = movedChunks
        self.reissuedChunks = reissuedChunks
    }

    public static func + (a: Self, b: Self) -> Self {
        Self(rebalances: a.rebalances + b.rebalances, movedChunks: a.movedChunks + b.movedChunks,
             reissuedChunks: a.reissuedChunks + b.reissuedChunks)
    }
}

public struct WorkerTiming: Codable, Sendable {
    public var rank: Int
    public var computeSeconds: Double
    public var communicateSeconds: Double
    public var waitSeconds: Double

    public init(rank: Int, computeSeconds: Double, communicateSeconds: Double, waitSeconds: Double) {
        self.rank = rank
        self.computeSeconds = computeSeconds
        self.communicateSeconds = communicateSeconds
        self.waitSeconds = waitSeconds
    }
}

/// What a run reports as it goes; the executable turns these into console lines and JSONL.
public enum TrainingEvent {
    case started(StartInfo)
    case step(StepRecord)
    /// A long evaluation is under way: `characters` of `of` scored (at most once a second).
    case evaluating(step: Int, characters: Int, of: Int)
    case evaluation(step: Int, result: Evaluator.Result)
    case checkpoint(step: Int, path: String)
    case message(String)
    case finished(Summary)
}

public struct StartInfo: Sendable {
    public var corpusName: String
    public var corpusCharacters: Int
    public var vocabularySize: Int
    public var trainCharacters: Int
    public var validationCharacters: Int
    /// What an evaluation scores: the validation split or its first `--eval-chars`.
    public var evaluatedCharacters: Int
    public var parameterCount: Int
    public var stepsPerEpoch: Int
    public var firstStep: Int
    public var steps: Int
    public var mode: String
    /// The level of the Float kernels (`KernelLevel`: avx512, avx2, portable).
    public var kernelLevel: String
    /// A classifier's classes (nil for a language model): the counts above are then examples.
    public var labelCount: Int?
    /// Classifier: training examples longer than `maxLength`, which are cut.
    public var truncatedExamples = 0
    public var maxLength = 0
}

public struct Summary: Sendable {
    public var steps: Int
    public var finalTrainLoss: Double?      // mean of the last (up to) 20 steps
    public var validation: Evaluator.Result?
    public var tokensPerSecond: Double      // median over the run's steps
    public var wallSeconds: Double
    public var checkpoint: String?
    /// Distributed runs: `--balance`'s work over the run.
    public var balancing: BalancingCounts?

    public init(steps: Int, finalTrainLoss: Double?, validation: Evaluator.Result?, tokensPerSecond: Double,
                wallSeconds: Double, checkpoint: String?, balancing: BalancingCounts? = nil) {
        self.balancing = balancing
        self.steps = steps
        self.finalTrainLoss = finalTrainLoss
        self.validation = validation
        self.tokensPerSecond = tokensPerSecond
        self.wallSeconds = wallSeconds
        self.checkpoint = checkpoint
    }
}
