import Dispatch
import Recurrent

/// The gradient of one step of a classification run over a block of the batch, on K
/// threads: `GradientEngine`'s counterpart for `--task classify`, with the same contract
/// (`GradientComputing`), so the loop, the coordinator, the workers and the shards treat
/// both tasks alike.
///
/// The batch of step s (`ClassifierBatches`) is cut into chunks of `chunkExamples`; a block
/// owns whole chunks. Each thread runs its chunks one at a time through its own
/// `SequenceClassifier` workspace, the chunk's gradient into the chunk's own slab, and the
/// slabs are summed through the fixed `ReductionTree` per node, as `GradientEngine` does:
/// a chunk is always computed as the same batch in the same order, so the sum is
/// bit-identical for any K and any number of workers. There is no carried state.
///
/// Memory: K workspaces of `chunkExamples` × `maxLength`, one parameter slab per chunk.
public final class ClassifierEngine: GradientComputing {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// The owned block of the batch: positions in the step's N examples, whole chunks.
    public let block: Range<Int>
    public let chunkExamples: Int
    public let maxLength: Int
    public let threads: Int
    public let nodes: [Range<Int>]
    public private(set) var nodeLoss: [Double]
    public var earlySlices: Range<Int>? { nil }   // no early hand-over: backward is short

    private let train: LabelledExamples
    private let batches: ClassifierBatches
    private let workspaces: [SequenceClassifier<Float>]
    private let threadChunks: [Range<Int>]
    private let chunkGradients: [UnsafeMutablePointer<Float>]
    private let chunkLoss: UnsafeMutablePointer<Double>
    private let nodeTrees: [ReductionTree]
    /// The order of the epoch last used (computing it reads every example once).
    private var epochOrder: (epoch: Int, order: [Int])?

    public init(config: ModelConfig, train: LabelledExamples, batches: ClassifierBatches, block: Range<Int>,
                chunkExamples: Int, maxLength: Int, threads: Int) {
        precondition(block.count % chunkExamples == 0 && block.lowerBound % chunkExamples == 0, "block must be whole chunks")
        self.config = config
        self.train = train
        self.batches = batches
        self.block = block
        self.chunkExamples = chunkExamples
        self.maxLength = maxLength
        layout = ParameterLayout(config)
        let chunkCount = block.count / chunkExamples
        self.threads = max(1, min(threads, chunkCount))
        threadChunks = StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: self.threads)
        workspaces = (0..<self.threads).map { _ in SequenceClassifier<Float>(config: config, capacity: chunkExamples, maxLength: maxLength) }
        let count = layout.count
        chunkGradients = (0..<chunkCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
        chunkLoss = .allocate(capacity: chunkCount)
        chunkLoss.initialize(repeating: 0, count: chunkCount)
        let first = block.lowerBound / chunkExamples
        nodes = ReductionTree.nodes(covering: first..<(first + chunkCount), in: 0..<(batches.batch / chunkExamples))
        nodeTrees = nodes.map { node in ReductionTree(leaves: node.map { $0..<($0 + 1) }, over: node) }
        nodeLoss = Array(repeating: 0, count: nodes.count)
    }

    deinit {
        chunkGradients.forEach { $0.deallocate() }
        chunkLoss.deallocate()
    }

    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { chunkGradients[nodes[i].lowerBound - nodes[0].lowerBound] }

    /// One step: the examples of global `step` (required: it names the epoch); the carried
    /// state is not read or written.
    public func computeGradient(parameters: UnsafePointer<Float>, step: Int?, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)?) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        guard let step else { preconditionFailure("a classification step needs the global step") }
        let epoch = batches.position(globalStep: step).epoch
        if epochOrder?.epoch != epoch { epochOrder = (epoch, batches.order(epoch: epoch)) }
        let examples = Array(batches.batch(stepInEpoch, of: epochOrder!.order))
        let count = layout.count, n = chunkExamples, first = block.lowerBound
        let work = ClassifierWork(workspaces: workspaces, threadChunks: threadChunks, gradients: chunkGradients,
                                  loss: chunkLoss, train: train, maxLength: maxLength)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let net = work.workspaces[thread]
            for chunk in work.threadChunks[thread] {
                let positions = (first + chunk * n)..<(first + chunk * n + n)
                for (row, i) in examples[positions].enumerated() {
                    net.lengths[row] = Int32(work.train.copyInput(i, maxLength: work.maxLength, into: net.inputs + row * work.maxLength))
                    net.labels[row] = work.train.examples[i].label
                }
                work.loss[chunk] = net.forward(parameters: parameters, count: n)
                work.gradients[chunk].update(repeating: 0, count: count)
                net.backward(parameters: parameters, gradient: work.gradients[chunk])
            }
        }
        let base = nodes[0].lowerBound
        for (i, tree) in nodeTrees.enumerated() {
            tree.sum(nodes[i].map { chunkGradients[$0 - base] }, elements: 0..<count, threads: threads)
        }
        let losses = Array(UnsafeBufferPointer(start: chunkLoss, count: chunkGradients.count))
        nodeLoss = zip(nodes, nodeTrees).map { node, tree in tree.sum(Array(losses[(node.lowerBound - base)..<(node.upperBound - base)])) }
        return (nodeLoss.reduce(0, +), chunkGradients[0])
    }
}

/// What the concurrentPerform body reads; each thread writes only its chunks' slabs and losses.
private struct ClassifierWork: @unchecked Sendable {
    let workspaces: [SequenceClassifier<Float>]
    let threadChunks: [Range<Int>]
    let gradients: [UnsafeMutablePointer<Float>]
    let loss: UnsafeMutablePointer<Double>
    let train: LabelledExamples
    let maxLength: Int
}
