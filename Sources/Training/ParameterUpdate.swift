import Recurrent

/// The coordinator step, shared by the in-process trainer and the parameter server:
/// summed gradient → divide by the token count → clip by global L2 norm → optimizer step.
/// Owns the parameter slab and the optimizer state: one `RangeUpdate` over the whole slab,
/// the same arithmetic a shard does on its range (so every `--shards S` gives these bits).
public final class ParameterUpdate {
    public let layout: ParameterLayout
    public let partition: SlabPartition
    public let whole: RangeUpdate
    public var optimizer: Optimizer { whole.optimizer }
    public var schedule: LearningRateSchedule { whole.schedule }
    public var clip: Float { whole.clip }
    /// The flat parameter slab (`layout.count` values).
    public var parameters: UnsafeMutableBufferPointer<Float> { whole.parameters }

    public struct Report {
        public var gradientNorm: Double   // before clipping
        public var learningRate: Float

        public init(gradientNorm: Double, learningRate: Float) {
            self.gradientNorm = gradientNorm
            self.learningRate = learningRate
        }
    }

    public init(layout: ParameterLayout, optimizer: OptimizerConfig, schedule: LearningRateSchedule,
                clip: Float, initial: [Float]) {
        precondition(initial.count == layout.count)
        self.layout = layout
        partition = SlabPartition(layout: layout, shards: 1)
        whole = RangeUpdate(range: 0..<layout.count, blocks: partition.blocks, optimizer: optimizer,
                            schedule: schedule, clip: clip, initial: initial[...])
    }

    /// Applies global step `step` (0-based) from the gradient of the summed loss over
    /// `tokenCount` predictions. `gradientSum` is scaled in place. A non-finite gradient
    /// norm leaves the parameters untouched.
    public func apply(gradientSum: UnsafeMutablePointer<Float>, tokenCount: Int, step: Int) -> Report {
        let g = UnsafeMutableBufferPointer(start: gradientSum, count: layout.count)
        let norm = GradientClipping.norm(blockSquares: whole.prepare(g, tokenCount: tokenCount))
        return whole.apply(g, norm: norm, step: step)
    }

    public var values: [Float] { Array(parameters) }
}

/// One contiguous range of the parameter slab with its optimizer state: what a parameter
/// shard owns, or the whole slab in-process. Two halves, because a shard's clip needs the norm
/// over every shard: `prepare` (÷ tokens, the blocks' Σg²), then `apply` (clip by the global
/// norm, optimizer step). Every operation is element-wise, so a range gives the same bits as
/// the same elements of the whole slab.
public final class RangeUpdate {
    /// Elements of the slab this update owns.
    public let range: Range<Int>
    /// Its norm blocks, relative to `range.lowerBound`.
    public let blocks: [Range<Int>]
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    public let clip: Float
    /// (range.count) the weights of the range.
    public let parameters: UnsafeMutableBufferPointer<Float>

    /// `blocks` are absolute element ranges within `range`; `initial` holds the range's values.
    public init(range: Range<Int>, blocks: [Range<Int>], optimizer: OptimizerConfig, schedule: LearningRateSchedule,
                clip: Float, initial: ArraySlice<Float>) {
        precondition(initial.count == range.count)
        self.range = range
        self.blocks = blocks.map { ($0.lowerBound - range.lowerBound)..<($0.upperBound - range.lowerBound) }
        self.optimizer = Optimizer(config: optimizer, parameterCount: range.count)
        self.schedule = schedule
        self.clip = clip
        parameters = .allocate(capacity: range.count)
        _ = parameters.initialize(from: initial)
    }

    deinit { parameters.deallocate() }

    /// Divides `gradient` (range.count, the summed gradient of the range) by the token count in
    /// place; returns Σg² of each of its blocks.
    public func prepare(_ gradient: UnsafeMutableBufferPointer<Float>, tokenCount: Int) -> [Double] {
        precondition(gradient.count == range.count)
        let scale = 1 / Float(tokenCount)
        for i in 0..<gradient.count { gradient[i] *= scale }
        return GradientClipping.blockSquares(UnsafeBufferPointer(gradient), blocks: blocks)
    }

    /// Clips `gradient` (prepared) by the global norm `norm` and takes optimizer step `step`
    /// (0-based). A non-finite norm changes nothing: the caller stops the run.
    public func apply(_ gradient: UnsafeMutableBufferPointer<Float>, norm: Double, step: Int) -> ParameterUpdate.Report {
        let rate = schedule.rate(atStep: step)
        guard norm.isFinite else { return .init(gradientNorm: norm, learningRate: rate) }
        if let c = GradientClipping.coefficient(norm: norm, maxNorm: clip) { GradientClipping.scale(gradient, by: c) }
        optimizer.step(parameters: parameters, gradient: UnsafeBufferPointer(gradient), learningRate: rate)
        return .init(gradientNorm: norm, learningRate: rate)
    }
}
