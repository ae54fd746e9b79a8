import Recurrent

/// What a worker needs of one step's gradient computation, whoever computes it: the nodes of
/// the global reduction tree its block of streams covers, each node's summed gradient (P
/// floats) and summed loss after `computeGradient`, and the early run of slices that is
/// handed over before the rest (see `GradientEngine.earlySlices`). `GradientEngine` computes
/// them; `EmulatedCompute` stands in for it in benchmarks.
public protocol GradientComputing: AnyObject {
    var threads: Int { get }
    var nodes: [Range<Int>] { get }
    var nodeLoss: [Double] { get }
    var earlySlices: Range<Int>? { get }
    func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float>
    /// `step` is the global step (dropout masks are keyed by it).
    func computeGradient(parameters: UnsafePointer<Float>, step: Int?, stepInEpoch: Int,
                         from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                         early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>)
}

extension GradientEngine: GradientComputing {}
