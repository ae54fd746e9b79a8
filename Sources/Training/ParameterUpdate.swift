import Recurrent

/// The coordinator step, shared by the in-process trainer and the parameter server:
/// summed gradient → divide by the token count → clip by global L2 norm → optimizer step.
/// Owns the parameter slab and the optimizer state.
public final class ParameterUpdate {
    public let layout: ParameterLayout
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    public let clip: Float
    /// The flat parameter slab (`layout.count` values).
    public let parameters: UnsafeMutableBufferPointer<Float>

    public struct Report {
        public var gradientNorm: Double   // before clipping
        public var learningRate: Float
    }

    public init(layout: ParameterLayout, optimizer: OptimizerConfig, schedule: LearningRateSchedule,
                clip: Float, initial: [Float]) {
        precondition(initial.count == layout.count)
        self.layout = layout
        self.optimizer = Optimizer(config: optimizer, parameterCount: layout.count)
        self.schedule = schedule
        self.clip = clip
        parameters = .allocate(capacity: layout.count)
        _ = parameters.initialize(from: initial)
    }

    deinit { parameters.deallocate() }

    /// Applies global step `step` (0-based) from the gradient of the summed loss over
    /// `tokenCount` predictions. `gradientSum` is scaled in place. A non-finite gradient
    /// norm leaves the parameters untouched.
    public func apply(gradientSum: UnsafeMutablePointer<Float>, tokenCount: Int, step: Int) -> Report {
        let count = layout.count
        let scale = 1 / Float(tokenCount)
        for i in 0..<count { gradientSum[i] *= scale }
        let g = UnsafeMutableBufferPointer(start: gradientSum, count: count)
        let norm: Double
        if clip > 0 {
            norm = GradientClipping.clip(g, maxNorm: clip).normBefore
        } else {
            norm = GradientClipping.globalNorm(UnsafeBufferPointer(g))
        }
        let rate = schedule.rate(atStep: step)
        guard norm.isFinite else { return Report(gradientNorm: norm, learningRate: rate) }  // caller stops the run
        optimizer.step(parameters: parameters, gradient: UnsafeBufferPointer(g), learningRate: rate)
        return Report(gradientNorm: norm, learningRate: rate)
    }

    public var values: [Float] { Array(parameters) }
}

/// PyTorch's initialisation: every recurrent weight and bias U(−1/√H, 1/√H) (nn.RNN/LSTM/
/// GRU), and the head's weight and bias U(−1/√H, 1/√H) (nn.Linear with fan_in H). Drawn in
/// layout order from the seeded generator.
public enum ParameterInitializer {
    public static func initialize(_ layout: ParameterLayout, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        let bound = 1 / Float(layout.config.hiddenSize).squareRoot()
        return (0..<layout.count).map { _ in rng.nextUniform(in: -bound...bound) }
    }
}
