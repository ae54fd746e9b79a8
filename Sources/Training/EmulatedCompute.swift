import Foundation
import Recurrent

/// `recur work --emulate-compute MS`: forward and backward replaced by a fixed wait, so that
/// many workers fit on a machine with few cores and a benchmark measures the links, not the
/// cores. Everything after the gradient stays real: encode, send, the coordinator's sum,
/// clip, optimizer, broadcast.
///
/// A step ends MS milliseconds after it began (the fill below counts in them). It leaves in
/// each node's slab (P floats, as `GradientEngine` does) a pseudo-gradient: a hash of (step in
/// epoch, the node's first chunk, element) mapped to ±`bound`·(tokens of the node), the same
/// in every run, small enough that Adam or SGD keep the weights finite for any run length.
/// The loss is ln V per token, a uniform guess over the vocabulary: plausible and fixed.
/// Carried state is left as it is.
///
/// The early slices (top layer and head) are handed over after `earlyShare` of MS, about
/// where the real engine hands them over: forward is a third of a step's multiply-adds (one
/// product per weight and token, backward two), and each layer's backward an equal part of
/// the other two thirds, the top layer's first.
///
/// Memory: one slab of P floats per node (one node for an aligned block), no workspaces.
public final class EmulatedCompute: GradientComputing {
    /// The per-token bound of a pseudo-gradient element: the coordinator's average over all
    /// tokens is then at most this per element.
    public static let bound: Float = 1e-4

    public let milliseconds: Double
    public let layout: ParameterLayout
    public let nodes: [Range<Int>]
    public let earlySlices: Range<Int>?
    /// The wait stands in for any K: one thread.
    public let threads = 1
    public let nodeLoss: [Double]
    /// One slab per node: (P).
    private let slabs: [UnsafeMutablePointer<Float>]
    /// Predictions per step of each node: its streams · T.
    private let nodeTokens: [Int]

    /// - Parameters:
    ///   - milliseconds: the wait per step; positive and finite.
    ///   - streams: the owned block of global streams; whole chunks, as `GradientEngine` takes.
    public init(milliseconds: Double, plan: RunPlan, streams: Range<Int>) {
        let chunkStreams = plan.config.chunkStreams
        precondition(milliseconds > 0 && milliseconds.isFinite, "emulated compute needs a positive wait")
        precondition(streams.count % chunkStreams == 0 && streams.lowerBound % chunkStreams == 0,
                     "stream block must be whole chunks")
        self.milliseconds = milliseconds
        layout = plan.layout
        earlySlices = GradientEngine.earlySlices(of: layout)
        let first = streams.lowerBound / chunkStreams
        nodes = ReductionTree.nodes(covering: first..<(streams.upperBound / chunkStreams), in: 0..<plan.chunkCount)
        nodeTokens = nodes.map { plan.streams(ofChunks: $0).count * plan.config.window }
        let uniformGuess = log(Double(plan.model.vocabularySize))
        nodeLoss = nodeTokens.map { Double($0) * uniformGuess }
        let count = layout.count
        slabs = nodes.map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
    }

    deinit { slabs.forEach { $0.deallocate() } }

    /// The share of MS after which the early slices are handed over: 1/3 + (2/3)/L.
    public var earlyShare: Double { 1.0 / 3 + 2.0 / 3 / Double(layout.config.layerCount) }

    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { slabs[i] }

    /// Same contract as `GradientEngine.computeGradient`; `parameters` and the state are not
    /// read, and `final` is not written (carried state stays as it was).
    public func computeGradient(parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        let start = DispatchTime.now().uptimeNanoseconds
        var rest = 0..<layout.slices.count
        if let early, let split = earlySlices {
            fill(elements: layout.elements(of: split), stepInEpoch: stepInEpoch)
            wait(from: start, share: earlyShare)
            early(split)
            rest = 0..<split.lowerBound
        }
        fill(elements: layout.elements(of: rest), stepInEpoch: stepInEpoch)
        wait(from: start, share: 1)
        return (nodeLoss.reduce(0, +), slabs[0])
    }

    /// Writes the pseudo-gradient of `elements` into every node's slab: the SplitMix64
    /// finaliser of (seed of step and node) ^ element, its top 32 bits as a signed fraction
    /// times the node's bound.
    private func fill(elements: Range<Int>, stepInEpoch: Int) {
        for (i, node) in nodes.enumerated() {
            let seed = UInt64(truncatingIfNeeded: stepInEpoch + 1) &* 0x9E37_79B9_7F4A_7C15
                ^ UInt64(truncatingIfNeeded: node.lowerBound + 1) &* 0xC2B2_AE3D_27D4_EB4F
            let scale = Self.bound * Float(nodeTokens[i]) / 2_147_483_648   // Int32 → ±bound·tokens
            let slab = slabs[i]
            for e in elements {
                var x = seed ^ UInt64(truncatingIfNeeded: e)
                x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
                x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
                x ^= x >> 31
                slab[e] = Float(Int32(truncatingIfNeeded: x >> 32)) * scale
            }
        }
    }

    /// Sleeps until `share` of MS after `start` (DispatchTime nanoseconds, monotonic). The
    /// wait is the emulated compute, not a poll: nothing is waited for.
    private func wait(from start: UInt64, share: Double) {
        let end = start + UInt64(share * milliseconds * 1e6)
        let now = DispatchTime.now().uptimeNanoseconds
        if end > now { Thread.sleep(forTimeInterval: Double(end - now) / 1e9) }
    }
}
