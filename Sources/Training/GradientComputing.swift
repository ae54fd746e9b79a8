import Recurrent

/// What the training loop and a worker need of one step's gradient computation over a block
/// of the batch, whatever the task: the nodes of the global reduction tree the block covers,
/// each node's summed gradient (P floats) and summed loss after `computeGradient`, and the
/// early run of slices that is handed over before the rest. `RunPlan.engine(block:threads:)`
/// makes the task's engine (`GradientEngine` for a language model, `ClassifierEngine` for a
/// classifier; both keep their sums in a `ChunkedGradient`); `EmulatedCompute` stands in for
/// either in benchmarks.
public protocol GradientComputing: AnyObject {
    /// K, the threads the engine computes on (capped at its chunk count).
    var threads: Int { get }
    /// The global-tree nodes (global chunk indices) the block covers, in order.
    var nodes: [Range<Int>] { get }
    /// The summed loss of each node after `computeGradient`.
    var nodeLoss: [Double] { get }
    /// The run of the parameter table (the top layer and the head) whose gradient is final
    /// before the rest and handed to `early`; nil when there is none.
    var earlySlices: Range<Int>? { get }
    /// Where `computeGradient` leaves the summed gradient of node `i` (P floats).
    func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float>
    /// One step of the block with the weights `parameters` (P): `step` is the global step
    /// (0-based; it keys a language model's dropout masks and names a classifier's epoch),
    /// `stepInEpoch` its place in the epoch. `initial` is the carried state the loop or worker
    /// holds for the block (L, n, H) and `final` receives the state after the step (may be the
    /// same object); a classifier's examples start from zero and carry nothing, so its state
    /// stays as it is (zero, as the loop keeps it). With `early`, the gradient of
    /// `earlySlices` is summed first and `early` is called with them before the rest is
    /// computed. Returns the summed loss and node 0's summed gradient, valid until the next call.
    func computeGradient(parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                         from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                         early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>)
}
