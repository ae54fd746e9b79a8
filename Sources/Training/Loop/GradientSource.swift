import Dispatch
import Recurrent

/// One step as the loop asks a gradient source for it.
public struct StepRequest {
    /// Global step, 0-based (the weights are those after `step` updates).
    public let step: Int
    public let stepInEpoch: Int
    /// (P) the current weights, read-only for the duration of the call.
    public let parameters: UnsafePointer<Float>

    public init(step: Int, stepInEpoch: Int, parameters: UnsafePointer<Float>) {
        self.step = step
        self.stepInEpoch = stepInEpoch
        self.parameters = parameters
    }
}

/// What a source returns for one step: the gradient of the *summed* loss over all N
/// streams, reduced in the fixed chunk order, and the split of the step's time.
public struct StepGradient {
    public var lossSum: Double
    /// (P) valid until the next call; the store scales it in place. Nil when the gradient
    /// stayed on sharded parameter servers (they hand in `blockSquares` instead).
    public var gradientSum: UnsafeMutablePointer<Float>?
    /// Sharded: Σg² of every norm block after ÷ tokens, in block order.
    public var blockSquares: [Double] = []
    public var tokenCount: Int
    /// Seconds, as in `StepRecord`; the loop counts the rest of the step as communication.
    public var computeSeconds: Double
    public var waitSeconds = 0.0
    public var workers: [WorkerTiming]?
    /// Distributed: what `--balance` did for this step.
    public var balancing: BalancingCounts?

    public init(lossSum: Double, gradientSum: UnsafeMutablePointer<Float>?, tokenCount: Int, computeSeconds: Double,
                waitSeconds: Double = 0, workers: [WorkerTiming]? = nil) {
        self.lossSum = lossSum
        self.gradientSum = gradientSum
        self.tokenCount = tokenCount
        self.computeSeconds = computeSeconds
        self.waitSeconds = waitSeconds
        self.workers = workers
    }
}

/// Where the training loop gets gradients: this process's threads (`LocalGradientSource`)
/// or the coordinator's workers (`Coordinator` in Cluster). A source never touches the
/// weights or the optimizer: the loop applies each step through its `ParameterStore` and owns
/// the carried state.
public protocol GradientSource: AnyObject {
    /// For the start line: "in-process, 2 thread(s)", "coordinator ipc://…, 2 worker(s)".
    var mode: String { get }

    /// Before the first step: joins workers and hands them `state` (L, N, H) as of `step`.
    func start(step: Int, state: CarriedState) throws

    /// The gradient of every stream for `request`, from carried state `state` (already zero
    /// at an epoch start); leaves the state after the step in `next`. `state` is not changed.
    func gradient(for request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient

    /// Runs `work` (evaluation, a checkpoint) while the source keeps its peers served.
    func whileServing<T>(_ work: @escaping () throws -> T) throws -> T

    /// The run is over (`reason` says why): release workers. Called once, also after errors.
    func finish(reason: String)
}

/// Gradients from this process: the task's engine over all N streams (examples) on K threads.
public final class LocalGradientSource: GradientSource {
    public let engine: any GradientComputing
    private let tokensPerStep: Int

    public init(plan: RunPlan, threads: Int) {
        engine = plan.engine(block: 0..<plan.config.streams, threads: threads)
        tokensPerStep = plan.tokensPerStep
    }

    public var mode: String { "in-process, \(engine.threads) thread(s)" }

    public func start(step: Int, state: CarriedState) throws {}

    public func gradient(for request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (lossSum, gradient) = engine.computeGradient(parameters: request.parameters, step: request.step, stepInEpoch: request.stepInEpoch,
                                                         from: state.recurrent, into: next.recurrent, early: nil)
        let t1 = DispatchTime.now().uptimeNanoseconds
        return StepGradient(lossSum: lossSum, gradientSum: gradient, tokenCount: tokensPerStep,
                            computeSeconds: Double(t1 - t0) / 1e9)
    }

    public func whileServing<T>(_ work: @escaping () throws -> T) throws -> T { try work() }

    public func finish(reason: String) {}
}
