import Recurrent

/// Computes the gradient of the summed loss of a block of streams for one step, on K
/// threads: the language model's `GradientComputing`. Used by the in-process trainer (all N
/// streams) and by each worker (its block).
///
/// Each thread runs a contiguous block of the streams through one workspace. The row-wise
/// products of the time loop give every stream the same bits whatever block it sits in
/// (`KernelScalar.rowProduct`), so only the weight gradients depend on grouping: they are
/// computed per fixed chunk of `chunkStreams` streams into the chunk's own slab and summed
/// per node through the fixed `ReductionTree` (`ChunkedGradient`, shared with
/// `ClassifierEngine`). Result: the gradient is bit-identical for any K and, once a
/// coordinator finishes the tree over every worker's nodes, for any number of workers.
///
/// Memory: K workspaces (together sized for the block) plus one parameter slab per chunk.
public final class GradientEngine: GradientComputing {
    public let config: ModelConfig
    public let streams: Range<Int>        // global stream indices owned
    public let chunkStreams: Int
    public let layout: ParameterLayout
    public let streamLayout: StreamLayout
    /// Dropout of the run (nil = none); masks are keyed by global step and stream.
    public let dropout: Dropout?

    private let train: TokenStore
    /// One workspace per thread, sized for the thread's chunks (`chunked.threadChunks`).
    private let workspaces: [RecurrentNetwork<Float>]
    /// The chunks' slabs and losses and their fixed-tree sums per node.
    private let chunked: ChunkedGradient

    /// - Parameters:
    ///   - data: the training split as symbol ids and the global N-stream layout over it.
    ///   - streams: the owned block of global streams; a whole number of chunks.
    ///   - dropout: the run's dropout (`TrainingConfig.dropoutMasks`), its masks keyed by the
    ///     global step `computeGradient` is given.
    public init(config: ModelConfig, data: RunPlan.LanguageModelData,
                streams: Range<Int>, chunkStreams: Int, threads: Int, dropout: Dropout? = nil) {
        precondition(streams.count % chunkStreams == 0 && streams.lowerBound % chunkStreams == 0,
                     "stream block must be whole chunks")
        self.config = config
        train = data.train
        streamLayout = data.streamLayout
        self.streams = streams
        self.chunkStreams = chunkStreams
        self.dropout = dropout
        layout = ParameterLayout(config)
        chunked = ChunkedGradient(parameterCount: layout.count,
                                  block: (streams.lowerBound / chunkStreams)..<(streams.upperBound / chunkStreams),
                                  chunkCount: streamLayout.streamCount / chunkStreams, threads: threads)
        workspaces = chunked.threadChunks.map { chunks in
            RecurrentNetwork<Float>(config: config, streams: chunks.count * chunkStreams, window: data.streamLayout.window, dropout: dropout)
        }
    }

    public var threads: Int { chunked.threads }
    public var nodes: [Range<Int>] { chunked.nodes }
    public var nodeLoss: [Double] { chunked.nodeLoss }
    public var chunkCount: Int { chunked.chunkCount }
    public func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { chunked.gradient(ofNode: i) }

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
    /// `gradient(ofNode:)` and `nodeLoss` for every node), valid until the next call. With
    /// `early`, the gradient of `earlySlices` is summed first and `early` is called with it (on
    /// this thread) before the lower layers run; those values stay untouched after. `step`
    /// (global, 0-based) keys the dropout masks.
    public func computeGradient(parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                                from initial: RecurrentState<Float>, into final: RecurrentState<Float>,
                                early: ((Range<Int>) -> Void)? = nil) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        precondition(initial.streamCount == streams.count && final.streamCount == streams.count)
        let split = early == nil ? nil : earlySlices
        let top = config.layerCount - 1
        chunked.onEachThread { thread in
            forwardAndTopBackward(thread: thread, parameters: parameters, step: step, stepInEpoch: stepInEpoch, from: initial)
            if split == nil { finishBackward(thread: thread, parameters: parameters, below: top, into: final) }
        }
        if let split, let early {
            chunked.sumNodes(elements: layout.elements(of: split))
            early(split)
            chunked.onEachThread { thread in
                finishBackward(thread: thread, parameters: parameters, below: top, into: final)
            }
            chunked.sumNodes(elements: layout.elements(of: 0..<split.lowerBound))
        } else {
            chunked.sumNodes(elements: 0..<layout.count)
        }
        return (chunked.sumLoss(), chunked.gradient(ofNode: 0))
    }

    /// One thread's part before the hand-over: its streams' data and forward, each chunk's
    /// loss, and the backward of the head and the top layer into the chunks' cleared slabs.
    private func forwardAndTopBackward(thread: Int, parameters: UnsafePointer<Float>, step: Int, stepInEpoch: Int,
                                       from initial: RecurrentState<Float>) {
        let net = workspaces[thread], chunks = chunked.threadChunks[thread]
        let local = chunks.lowerBound * chunkStreams, first = streams.lowerBound + local
        streamLayout.fill(inputs: net.inputs, targets: net.targets, train: train,
                          streams: first..<(first + net.streamCount), stepInEpoch: stepInEpoch)
        net.dropoutPosition = Dropout.Position(step: step, firstStream: first)
        net.forward(parameters: parameters, initialState: initial.view(from: local))
        let slabs = clearedSlabs(chunks)
        for (chunk, slab) in zip(chunks, slabs) {
            var loss = 0.0
            for s in slab.streams { loss += net.streamLoss[s] }
            chunked.setLoss(loss, ofChunk: chunk)
        }
        net.backwardHead(parameters: parameters, chunks: slabs)
        net.backwardLayer(config.layerCount - 1, parameters: parameters, chunks: slabs)
    }

    /// Backward of the layers below `top` on one thread's workspace, then its final state.
    private func finishBackward(thread: Int, parameters: UnsafePointer<Float>, below top: Int, into final: RecurrentState<Float>) {
        let net = workspaces[thread], chunks = chunked.threadChunks[thread]
        let slabs = chunks.map { GradientChunk(streams: rows(of: $0, in: chunks), gradient: chunked.slab($0)) }
        for l in stride(from: top - 1, through: 0, by: -1) {
            net.backwardLayer(l, parameters: parameters, chunks: slabs)
        }
        net.copyFinalState(to: final.view(from: chunks.lowerBound * chunkStreams))
    }

    /// The chunks of one thread as the workspace sees them (its rows), their slabs cleared.
    private func clearedSlabs(_ chunks: Range<Int>) -> [GradientChunk<Float>] {
        chunks.map { GradientChunk(streams: rows(of: $0, in: chunks), gradient: chunked.clearedSlab($0)) }
    }

    /// Workspace rows of `chunk` (a chunk of the thread's block `chunks`).
    private func rows(of chunk: Int, in chunks: Range<Int>) -> Range<Int> {
        let first = (chunk - chunks.lowerBound) * chunkStreams
        return first..<(first + chunkStreams)
    }
}
