import Foundation
import Recurrent

/// `recur work --emulate-chunk-ms MS [--emulate-slowdown F@A-B]`: a worker made slower on
/// purpose, to test load balancing on one machine. The worker computes its gradient for real
/// and then waits MS milliseconds per chunk it owns, times F from global step A to B (1-based,
/// inclusive; F alone: every step). The bytes it pushes are the real ones, so a run with a
/// delay gives the weights of a run without; only its timing changes, and a chunk moved to
/// another worker costs that worker what it would cost a slower node.
public struct ChunkDelay: Sendable, Equatable {
    /// Wait per chunk per step, on top of the real compute.
    public var milliseconds: Double
    /// The slowdown: F× the wait within `slowSteps`.
    public var factor: Double = 1
    /// 1-based global steps, inclusive, where `factor` applies; nil: every step.
    public var slowSteps: ClosedRange<Int>?

    /// The longest accepted wait per chunk: an hour (a longer one is a typo, seconds for ms).
    public static let millisecondsLimit = 3_600_000.0

    public init(milliseconds: Double, factor: Double = 1, slowSteps: ClosedRange<Int>? = nil) {
        self.milliseconds = milliseconds
        self.factor = factor
        self.slowSteps = slowSteps
    }

    /// The wait per chunk at the 0-based global `step`.
    public func millisecondsPerChunk(atStep step: Int) -> Double {
        guard let slowSteps else { return milliseconds * factor }
        return slowSteps.contains(step + 1) ? milliseconds * factor : milliseconds
    }

    /// Parses `F@A-B` or `F`: F positive (at most 1000; also refuses nan), 1 ≤ A ≤ B. Nil when
    /// the text is neither.
    public static func slowdown(_ text: String) -> (factor: Double, steps: ClosedRange<Int>?)? {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let factor = Double(parts[0]), factor > 0, factor <= 1000 else { return nil }
        guard parts.count == 2 else { return (factor, nil) }
        let bounds = parts[1].split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]), first >= 1, last >= first else { return nil }
        return (factor, first...last)
    }
}

/// A gradient engine with a `ChunkDelay`: the inner engine's real step, then the wait for the
/// chunks the block covers. The wait lies inside the step's compute time, as a slower CPU's
/// would, so the coordinator measures it.
public final class ChunkDelayedCompute: GradientComputing {
    public let inner: any GradientComputing
    public let delay: ChunkDelay
    /// The chunks of the block: the wait is per chunk.
    public let chunkCount: Int

    public init(_ inner: any GradientComputing, delay: ChunkDelay) {
        self.inner = inner
        self.delay = delay
        chunkCount = inner.nodes.reduce(0) { $0 + $1.count }
    }

    public var threads: Int { inner.threads }
    public var nodes: [Range<Int>] { inner.nodes }
    public var nodeLoss: [Double] { inner.nodeLoss }
    public var earlySlices: Range<Int>? { inner.earlySlices }
    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { inner.gradient(ofNode: i) }

    public func computeGradient(parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        let result = inner.computeGradient(parameters: parameters, step: step, stepInEpoch: stepInEpoch,
                                           from: initial, into: final, early: early)
        let seconds = Double(chunkCount) * delay.millisecondsPerChunk(atStep: step) / 1000
        if seconds > 0 { Thread.sleep(forTimeInterval: seconds) }
        return result
    }
}
