import Dispatch
import Recurrent

/// Computes the gradient of the summed loss of a block of streams for one step, on K
/// threads. Used by the in-process trainer (all N streams) and by each worker (its block).
///
/// Each thread runs a contiguous block of the streams through one workspace. The row-wise
/// products of the time loop give every stream the same bits whatever block it sits in
/// (`KernelScalar.rowProduct`), so only the weight gradients depend on grouping: they are
/// computed per fixed chunk of `chunkStreams` streams into the chunk's own slab, and the
/// slabs are summed through the fixed `ReductionTree`: per node of the global tree that the
/// block covers (`nodes`; one node, the block itself, when it is aligned). Result: the
/// gradient is bit-identical for any K and, once a coordinator finishes the tree over every
/// worker's nodes, for any number of workers.
///
/// Memory: K workspaces (together sized for the block) plus one parameter slab per chunk.
public final class GradientEngine {
    public let config: ModelConfig
    public let streams: Range<Int>        // global stream indices owned
    public let chunkStreams: Int
    public let threads: Int
    public let layout: ParameterLayout
    public let streamLayout: StreamLayout
    /// Dropout of the run (nil = none); masks are keyed by global step and stream.
    public let dropout: Dropout?

    private let train: TokenStore
    private let workspaces: [RecurrentNetwork<Float>]
    /// Chunks (indices into the block) each thread's workspace covers.
    private let threadChunks: [Range<Int>]
    private let chunkGradients: [UnsafeMutablePointer<Float>]
    /// The global-tree nodes (global chunk indices) this block covers, and a tree over each.
    public let nodes: [Range<Int>]
    private let nodeTrees: [ReductionTree]
    private let chunkLoss: UnsafeMutablePointer<Double>
    /// The summed loss of each node after `computeGradient`.
    public private(set) var nodeLoss: [Double]

    /// - Parameters:
    ///   - train: the training split as symbol ids.
    ///   - streamLayout: the global N-stream layout over `train`.
    ///   - streams: the owned block of global streams; a whole number of chunks.
    ///   - dropout: the run's dropout (`TrainingConfig.dropoutMasks`); `computeGradient` then
    ///     needs the global step.
    public init(config: ModelConfig, train: TokenStore, streamLayout: StreamLayout,
                streams: Range<Int>, chunkStreams: Int, threads: Int, dropout: Dropout? = nil) {
        precondition(streams.count % chunkStreams == 0 && streams.lowerBound % chunkStreams == 0,
                     "stream block must be whole chunks")
        self.config = config
        self.train = train
        self.streamLayout = streamLayout
        self.streams = streams
        self.chunkStreams = chunkStreams
        self.dropout = dropout
        let chunkCount = streams.count / chunkStreams
        self.threads = max(1, min(threads, chunkCount))
        layout = ParameterLayout(config)
        threadChunks = StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: self.threads)
        workspaces = threadChunks.map { block in
            RecurrentNetwork<Float>(config: config, streams: block.count * chunkStreams, window: streamLayout.window, dropout: dropout)
        }
        let count = layout.count
        chunkGradients = (0..<chunkCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
        let first = streams.lowerBound / chunkStreams
        nodes = ReductionTree.nodes(covering: first..<(first + chunkCount),
                                    in: 0..<(streamLayout.streamCount / chunkStreams))
        nodeTrees = nodes.map { node in ReductionTree(leaves: node.map { $0..<($0 + 1) }, over: node) }
        nodeLoss = Array(repeating: 0, count: nodes.count)
        chunkLoss = .allocate(capacity: chunkCount)
        chunkLoss.initialize(repeating: 0, count: chunkCount)
    }

    deinit {
        chunkGradients.forEach { $0.deallocate() }
        chunkLoss.deallocate()
    }

    public var chunkCount: Int { chunkGradients.count }

    /// The chunk slabs of node `i`, in chunk order (its tree's leaves).
    private func nodeSlabs(_ i: Int) -> [UnsafeMutablePointer<Float>] {
        let base = nodes[0].lowerBound
        return nodes[i].map { chunkGradients[$0 - base] }
    }

    /// Where `computeGradient` leaves the summed gradient of node `i` (also during `early`).
    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { chunkGradients[nodes[i].lowerBound - nodes[0].lowerBound] }

    /// The run of the parameter table (the top layer and the head) whose gradient is final
    /// before the lower layers' backward starts: `computeGradient(early:)` hands it out then,
    /// so a worker can send it while the rest computes. nil for one layer.
    public var earlySlices: Range<Int>? { Self.earlySlices(of: layout) }

    /// The early run of `layout`'s table (see `earlySlices`), for anything that stands in
    /// for the engine (`EmulatedCompute`).
    public static func earlySlices(of layout: ParameterLayout) -> Range<Int>? {
        guard layout.config.layerCount > 1 else { return nil }
        return layout.slices(ofLayer: layout.config.layerCount - 1).lowerBound..<layout.slices.count
    }

    public var tokensPerStep: Int { streams.count * streamLayout.window }

    /// One step: forward + backward of every owned stream at `stepInEpoch`, from carried
    /// state `initial` (n streams) to the state after the step in `final` (may be the same
    /// object: each thread reads its rows before it writes them). Returns the summed loss and
    /// the summed gradient of the first node (the whole block when it is aligned; see
    /// `gradient(ofNode:)` and `nodeLoss` for every node), valid until the next call. With `early`, the gradient of
    /// `earlySlices` is summed first and `early` is called with it (on this thread) before
    /// the lower layers run; those values stay untouched after. `step` (global, 0-based) keys
    /// the dropout masks and is required with dropout.
    public func computeGradient(parameters: UnsafePointer<Float>, step: Int? = nil, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)? = nil) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        precondition(initial.streamCount == streams.count && final.streamCount == streams.count)
        precondition(dropout == nil || step != nil, "dropout needs the global step")
        let split = early == nil ? nil : earlySlices
        let count = layout.count, n = chunkStreams, K = threads, C = chunkCount
        let first = streams.lowerBound
        let work = EngineWork(workspaces: workspaces, threadChunks: threadChunks, gradients: chunkGradients,
                              loss: chunkLoss, initial: initial, final: final, train: train,
                              streamLayout: streamLayout, chunkStreams: chunkStreams)
        DispatchQueue.concurrentPerform(iterations: K) { thread in
            let net = work.workspaces[thread], chunks = work.threadChunks[thread]
            let local = chunks.lowerBound * n
            work.streamLayout.fill(inputs: net.inputs, targets: net.targets, train: work.train,
                                   streams: (first + local)..<(first + local + net.streamCount),
                                   stepInEpoch: stepInEpoch)
            net.dropoutPosition = step.map { Dropout.Position(step: $0, firstStream: first + local) }
            net.forward(parameters: parameters, initialState: work.initial.view(from: local))
            for chunk in chunks {
                work.gradients[chunk].update(repeating: 0, count: count)
                var loss = 0.0
                for s in work.rows(of: chunk, in: chunks) { loss += net.streamLoss[s] }
                work.loss[chunk] = loss
            }
            let slabs = work.slabs(chunks)
            net.backwardHead(parameters: parameters, chunks: slabs)
            net.backwardLayer(net.config.layerCount - 1, parameters: parameters, chunks: slabs)
            if split == nil { work.finishBackward(thread: thread, parameters: parameters, below: net.config.layerCount - 1) }
        }
        let sumNodes = { (elements: Range<Int>) in
            for (i, tree) in self.nodeTrees.enumerated() {
                tree.sum(self.nodeSlabs(i), elements: elements, threads: K)
            }
        }
        if let split, let early {
            sumNodes(layout.elements(of: split))
            early(split)
            DispatchQueue.concurrentPerform(iterations: K) { thread in
                work.finishBackward(thread: thread, parameters: parameters, below: config.layerCount - 1)
            }
            sumNodes(layout.elements(of: 0..<split.lowerBound))
        } else {
            sumNodes(0..<count)
        }
        let losses = Array(UnsafeBufferPointer(start: chunkLoss, count: C))
        let base = nodes[0].lowerBound
        nodeLoss = zip(nodes, nodeTrees).map { node, tree in tree.sum(Array(losses[(node.lowerBound - base)..<(node.upperBound - base)])) }
        return (nodeLoss.reduce(0, +), chunkGradients[0])
    }
}

/// What the concurrentPerform body reads; each thread writes only its chunks' slabs, loss
/// entries and state rows.
private struct EngineWork: @unchecked Sendable {
    let workspaces: [RecurrentNetwork<Float>]
    let threadChunks: [Range<Int>]
    let gradients: [UnsafeMutablePointer<Float>]
    let loss: UnsafeMutablePointer<Double>
    let initial: RecurrentState<Float>
    let final: RecurrentState<Float>
    let train: TokenStore
    let streamLayout: StreamLayout
    let chunkStreams: Int

    /// Workspace rows of `chunk` (a chunk of the thread's block `chunks`).
    func rows(of chunk: Int, in chunks: Range<Int>) -> Range<Int> {
        let first = (chunk - chunks.lowerBound) * chunkStreams
        return first..<(first + chunkStreams)
    }

    func slabs(_ chunks: Range<Int>) -> [GradientChunk<Float>] {
        chunks.map { GradientChunk(streams: rows(of: $0, in: chunks), gradient: gradients[$0]) }
    }

    /// Backward of the layers below `top` on one thread's workspace, then its final state.
    func finishBackward(thread: Int, parameters: UnsafePointer<Float>, below top: Int) {
        let net = workspaces[thread], chunks = threadChunks[thread]
        let slabs = slabs(chunks)
        for l in stride(from: top - 1, through: 0, by: -1) {
            net.backwardLayer(l, parameters: parameters, chunks: slabs)
        }
        net.copyFinalState(to: final.view(from: chunks.lowerBound * chunkStreams))
    }
}
