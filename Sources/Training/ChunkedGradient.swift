import Dispatch

/// The per-chunk gradient slabs of one block of chunks and their sums through the fixed
/// `ReductionTree`: the bookkeeping that the language model's `GradientEngine` and the
/// classifier's `ClassifierEngine` share; only what fills a chunk's slab differs.
///
/// A block owns the chunks `block` (global indices, whole chunks) of a step's `chunkCount`.
/// Each chunk's weight gradient goes into the chunk's own slab (P floats) and its summed loss
/// into its own entry; then every node of the global tree that the block covers (`nodes`; one
/// node, the block itself, when it is aligned) is summed through its own subtree, gradient
/// and loss alike. A sum therefore depends on the chunks alone, never on how many threads
/// filled them or which worker holds the block.
///
/// K threads split the block's chunks again into contiguous runs (`threadChunks`; K is capped
/// at the block's chunk count). Memory: one slab of P floats and one Double per chunk.
final class ChunkedGradient {
    let parameterCount: Int
    let threads: Int
    /// For each thread, the chunks it fills: indices into the block (0 = the block's first).
    let threadChunks: [Range<Int>]
    /// The global-tree nodes (global chunk indices) the block covers, in chunk order.
    let nodes: [Range<Int>]
    /// The summed loss of each node after `sumLoss()`.
    private(set) var nodeLoss: [Double]

    /// The block's first global chunk.
    private let firstChunk: Int
    /// (block's chunks) × (P) gradients; node i's sum ends in the slab of its first chunk.
    private let slabs: [UnsafeMutablePointer<Float>]
    /// (block's chunks) loss sums.
    private let chunkLoss: UnsafeMutablePointer<Double>
    /// One tree per node, its leaves the node's single chunks.
    private let nodeTrees: [ReductionTree]

    /// - Parameters:
    ///   - parameterCount: P, the values of one slab.
    ///   - block: the owned global chunks.
    ///   - chunkCount: C, the chunks of a whole step (the root of the tree is 0..<C).
    ///   - threads: K, capped at the block's chunk count.
    init(parameterCount: Int, block: Range<Int>, chunkCount: Int, threads: Int) {
        precondition(!block.isEmpty && block.lowerBound >= 0 && block.upperBound <= chunkCount, "block must lie in 0..<\(chunkCount)")
        self.parameterCount = parameterCount
        self.threads = max(1, min(threads, block.count))
        threadChunks = StreamLayout.contiguousBlocks(of: 0..<block.count, parts: self.threads)
        firstChunk = block.lowerBound
        slabs = block.map { _ in
            // 64-byte aligned: the weight gradients in it are the C of the weight-gradient
            // products (see RecurrentNetwork's buffers; ParameterLayout's offsets keep the lines).
            let slab = UnsafeMutableRawPointer.allocate(byteCount: max(parameterCount, 1) * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: max(parameterCount, 1))
            slab.initialize(repeating: 0, count: parameterCount)
            return slab
        }
        chunkLoss = .allocate(capacity: block.count)
        chunkLoss.initialize(repeating: 0, count: block.count)
        nodes = ReductionTree.nodes(covering: block, in: 0..<chunkCount)
        nodeTrees = nodes.map { node in ReductionTree(leaves: node.map { $0..<($0 + 1) }, over: node) }
        nodeLoss = Array(repeating: 0, count: nodes.count)
    }

    deinit {
        slabs.forEach { $0.deallocate() }
        chunkLoss.deallocate()
    }

    /// The block's chunk count.
    var chunkCount: Int { slabs.count }

    /// The slab of the block's chunk `chunk`, set to zero: the chunk's gradient is added into it.
    func clearedSlab(_ chunk: Int) -> UnsafeMutablePointer<Float> {
        slabs[chunk].update(repeating: 0, count: parameterCount)
        return slabs[chunk]
    }

    /// The slab of the block's chunk `chunk` as it is.
    func slab(_ chunk: Int) -> UnsafeMutablePointer<Float> { slabs[chunk] }

    /// Records the summed loss of the block's chunk `chunk`.
    func setLoss(_ loss: Double, ofChunk chunk: Int) { chunkLoss[chunk] = loss }

    /// Where `sumNodes` leaves the summed gradient of node `i`: the slab of its first chunk.
    func gradient(ofNode i: Int) -> UnsafeMutablePointer<Float> { slabs[nodes[i].lowerBound - firstChunk] }

    /// Runs `body(thread)` for every thread at once; a thread writes only the slabs and losses
    /// of its own chunks (`threadChunks[thread]`).
    func onEachThread(_ body: (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: threads, execute: body)
    }

    /// Sums every node's slabs through its tree over the elements `elements` (all of them, or
    /// one part of the parameter table), on the threads.
    func sumNodes(elements: Range<Int>) {
        for (node, tree) in zip(nodes, nodeTrees) {
            tree.sum(node.map { slabs[$0 - firstChunk] }, elements: elements, threads: threads)
        }
    }

    /// Sums every node's chunk losses through its tree (into `nodeLoss`); returns their sum,
    /// in node order.
    func sumLoss() -> Double {
        let losses = Array(UnsafeBufferPointer(start: chunkLoss, count: chunkCount))
        nodeLoss = zip(nodes, nodeTrees).map { node, tree in
            tree.sum(Array(losses[(node.lowerBound - firstChunk)..<(node.upperBound - firstChunk)]))
        }
        return nodeLoss.reduce(0, +)
    }
}
