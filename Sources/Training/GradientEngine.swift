import Dispatch
import Recurrent

/// Computes the gradient of the summed loss of a block of streams for one step, on K
/// threads. Used by the in-process trainer (all N streams) and by each worker (its block).
///
/// The block is cut into fixed chunks of `chunkStreams` streams. A chunk is the unit of
/// work: one thread runs one chunk at a time through a workspace of exactly that many
/// streams, so every BLAS call has the same shape whatever K is, and writes the chunk's
/// weight gradient into the chunk's own slab. The slabs are then summed through the fixed
/// `ReductionTree`. Result: the gradient is bit-identical for any K, and — when blocks are
/// aligned to the tree — for any number of workers.
///
/// Memory: K workspaces plus one parameter-sized slab per chunk.
public final class GradientEngine {
    public let config: ModelConfig
    public let streams: Range<Int>        // global stream indices owned
    public let chunkStreams: Int
    public let threads: Int
    public let layout: ParameterLayout
    public let streamLayout: StreamLayout
    /// Carried state of the owned streams (L, n, H).
    public let state: RecurrentState<Float>

    private let train: [Int32]
    private let workspaces: [RecurrentNetwork<Float>]
    private let chunkGradients: [UnsafeMutablePointer<Float>]
    private let tree: ReductionTree
    private let chunkLoss: UnsafeMutablePointer<Double>

    /// - Parameters:
    ///   - train: the training split as symbol ids.
    ///   - streamLayout: the global N-stream layout over `train`.
    ///   - streams: the owned block of global streams; a whole number of chunks.
    public init(config: ModelConfig, train: [Int32], streamLayout: StreamLayout,
                streams: Range<Int>, chunkStreams: Int, threads: Int) {
        precondition(streams.count % chunkStreams == 0 && streams.lowerBound % chunkStreams == 0,
                     "stream block must be whole chunks")
        self.config = config
        self.train = train
        self.streamLayout = streamLayout
        self.streams = streams
        self.chunkStreams = chunkStreams
        let chunkCount = streams.count / chunkStreams
        self.threads = max(1, min(threads, chunkCount))
        layout = ParameterLayout(config)
        state = RecurrentState(config: config, streams: streams.count)
        workspaces = (0..<self.threads).map { _ in
            RecurrentNetwork<Float>(config: config, streams: chunkStreams, window: streamLayout.window)
        }
        let count = layout.count
        chunkGradients = (0..<chunkCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
        let first = streams.lowerBound / chunkStreams
        tree = ReductionTree(leaves: (0..<chunkCount).map { (first + $0)..<(first + $0 + 1) },
                             over: first..<(first + chunkCount))
        chunkLoss = .allocate(capacity: chunkCount)
        chunkLoss.initialize(repeating: 0, count: chunkCount)
    }

    deinit {
        chunkGradients.forEach { $0.deallocate() }
        chunkLoss.deallocate()
    }

    public var chunkCount: Int { chunkGradients.count }
    public var tokensPerStep: Int { streams.count * streamLayout.window }

    /// One step: forward + backward of every owned stream at `stepInEpoch`, carrying state.
    /// Returns the summed loss and the summed gradient (valid until the next call).
    public func computeGradient(parameters: UnsafePointer<Float>, stepInEpoch: Int,
                                resetState: Bool) -> (lossSum: Double, gradient: UnsafeMutablePointer<Float>) {
        if resetState { state.reset() }
        let count = layout.count, n = chunkStreams, K = threads, C = chunkCount
        let first = streams.lowerBound
        let work = EngineWork(workspaces: workspaces, gradients: chunkGradients, loss: chunkLoss,
                              state: state, train: train, streamLayout: streamLayout)
        DispatchQueue.concurrentPerform(iterations: K) { thread in
            let net = work.workspaces[thread]
            var chunk = thread
            while chunk < C {
                let local = chunk * n
                work.train.withUnsafeBufferPointer { tokens in
                    work.streamLayout.fill(inputs: net.inputs, targets: net.targets, train: tokens,
                                           streams: (first + local)..<(first + local + n),
                                           stepInEpoch: stepInEpoch)
                }
                let view = work.state.view(from: local)
                let gradient = work.gradients[chunk]
                gradient.update(repeating: 0, count: count)
                work.loss[chunk] = net.forward(parameters: parameters, initialState: view)
                net.backward(parameters: parameters, chunks: [GradientChunk(streams: 0..<n, gradient: gradient)])
                net.copyFinalState(to: view)
                chunk += K
            }
        }
        tree.sum(chunkGradients, count: count, threads: K)
        let loss = tree.sum(Array(UnsafeBufferPointer(start: chunkLoss, count: C)))
        return (loss, chunkGradients[0])
    }
}

/// What the concurrentPerform body reads; each thread writes only its chunks' slabs, loss
/// entries and state rows.
private struct EngineWork: @unchecked Sendable {
    let workspaces: [RecurrentNetwork<Float>]
    let gradients: [UnsafeMutablePointer<Float>]
    let loss: UnsafeMutablePointer<Double>
    let state: RecurrentState<Float>
    let train: [Int32]
    let streamLayout: StreamLayout
}
