import Recurrent

/// The gradient of one step of a classification run over a block of the batch, on K
/// threads: `GradientEngine`'s counterpart for `--task classify`, with the same contract
/// (`GradientComputing`), so the loop, the coordinator, the workers and the shards treat
/// both tasks alike.
///
/// The batch of step s (`ClassifierBatches`) is cut into chunks of `chunkExamples`; a block
/// owns whole chunks. Each thread runs its chunks one at a time through its own
/// `SequenceClassifier` workspace, the chunk's gradient into the chunk's own slab, and the
/// slabs are summed per node through the fixed `ReductionTree` (`ChunkedGradient`, shared
/// with `GradientEngine`): a chunk is always computed as the same batch in the same order, so
/// the sum is bit-identical for any K and any number of workers. There is no carried state.
///
/// Memory: K workspaces of `chunkExamples` × `maxLength`, one parameter slab per chunk.
public final class ClassifierEngine: GradientComputing {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// The owned block of the batch: positions in the step's N examples, whole chunks.
    public let block: Range<Int>
    public let chunkExamples: Int
    public let maxLength: Int
    public var earlySlices: Range<Int>? { nil }   // no early hand-over: backward is short

    private let data: RunPlan.Classification
    private let workspaces: [SequenceClassifier<Float>]
    /// The chunks' slabs and losses and their fixed-tree sums per node.
    private let chunked: ChunkedGradient
    /// The order of the epoch last used (computing it reads every example once).
    private var epochOrder: (epoch: Int, order: [Int])?

    /// - Parameters:
    ///   - data: the run's examples and the batch of every step.
    ///   - block: positions in the step's N examples; whole chunks of `chunkExamples`.
    public init(config: ModelConfig, data: RunPlan.Classification, block: Range<Int>, chunkExamples: Int, maxLength: Int, threads: Int) {
        precondition(block.count % chunkExamples == 0 && block.lowerBound % chunkExamples == 0, "block must be whole chunks")
        self.config = config
        self.data = data
        self.block = block
        self.chunkExamples = chunkExamples
        self.maxLength = maxLength
        layout = ParameterLayout(config)
        chunked = ChunkedGradient(parameterCount: layout.count,
                                  block: (block.lowerBound / chunkExamples)..<(block.upperBound / chunkExamples),
                                  chunkCount: data.batches.batch / chunkExamples, threads: threads)
        workspaces = (0..<chunked.threads).map { _ in
            SequenceClassifier<Float>(config: config, capacity: chunkExamples, maxLength: maxLength)
        }
    }

    public var threads: Int { chunked.threads }
    public var nodes: [Range<Int>] { chunked.nodes }
    public var nodeLoss: [Double] { chunked.nodeLoss }
    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { chunked.gradient(ofNode: i) }

    /// One step: the examples of global `step` (it names the epoch, whose order is cached),
    /// at `stepInEpoch`. The carried state is not read or written: every example starts from
    /// zero. `early` is never called (no `earlySlices`).
    public func computeGradient(parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        let examples = batch(step: step, stepInEpoch: stepInEpoch)
        chunked.onEachThread { thread in
            for chunk in chunked.threadChunks[thread] {
                computeChunk(chunk, examples: examples, on: workspaces[thread], parameters: parameters)
            }
        }
        chunked.sumNodes(elements: 0..<layout.count)
        return (chunked.sumLoss(), chunked.gradient(ofNode: 0))
    }

    /// The training-example indices of the step's N positions.
    private func batch(step: Int, stepInEpoch: Int) -> [Int] {
        let epoch = data.batches.position(globalStep: step).epoch
        let order: [Int]
        if let cached = epochOrder, cached.epoch == epoch {
            order = cached.order
        } else {
            order = data.batches.order(epoch: epoch)
            epochOrder = (epoch, order)
        }
        return Array(data.batches.batch(stepInEpoch, of: order))
    }

    /// The block's chunk `chunk` (an index into the block) through `net`: its examples'
    /// inputs, the summed loss, the gradient into the chunk's cleared slab.
    private func computeChunk(_ chunk: Int, examples: [Int], on net: SequenceClassifier<Float>, parameters: UnsafePointer<Float>) {
        let first = block.lowerBound + chunk * chunkExamples
        for (row, i) in examples[first..<(first + chunkExamples)].enumerated() {
            net.lengths[row] = Int32(data.train.copyInput(i, maxLength: maxLength, into: net.inputs + row * maxLength))
            net.labels[row] = data.train.examples[i].label
        }
        chunked.setLoss(net.forward(parameters: parameters, count: chunkExamples), ofChunk: chunk)
        net.backward(parameters: parameters, gradient: chunked.clearedSlab(chunk))
    }
}
