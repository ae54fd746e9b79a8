import Dispatch

/// The fixed order in which gradient chunks are summed, so that the total does not depend on
/// how chunks were spread over threads, workers or the network.
///
/// The tree is defined on chunk indices: a node covering chunks a..<b (b − a > 1) is the sum
/// of its left child a..<m and right child m..<b with m = a + (b − a)/2, added as
/// `left += right`. A party that holds already-summed *leaves* (a worker's block, a thread's
/// chunk) follows the same tree; when every leaf is a node of the tree (worker blocks aligned
/// to powers of two, say), the result is bit-identical to summing the chunks one by one
/// through the tree. When a leaf is not a tree node, the leaves are summed left to right:
/// still deterministic, no longer identical to other splits.
public struct ReductionTree: Equatable, Sendable {
    /// `into += from`, both indices into the leaf list, in execution order. Leaf 0 ends
    /// holding the total.
    public let additions: [Addition]
    public let isAligned: Bool

    public struct Addition: Equatable, Sendable {
        public let into: Int
        public let from: Int
    }

    /// - Parameters:
    ///   - leaves: contiguous, ascending ranges of chunk indices covering `chunks` exactly.
    ///   - chunks: the node the caller reduces (all chunks, or a worker's block).
    public init(leaves: [Range<Int>], over chunks: Range<Int>) {
        precondition(!leaves.isEmpty && leaves.first!.lowerBound == chunks.lowerBound
                     && leaves.last!.upperBound == chunks.upperBound, "leaves must cover the chunks")
        var additions: [Addition] = []
        /// Returns the index of the leaf that holds the node's sum, or nil when the node is
        /// not composed of whole leaves.
        func reduce(_ node: Range<Int>) -> Int? {
            if let exact = leaves.firstIndex(of: node) { return exact }
            guard node.count > 1 else { return nil }
            let middle = node.lowerBound + node.count / 2
            guard let left = reduce(node.lowerBound..<middle), let right = reduce(middle..<node.upperBound) else {
                return nil
            }
            additions.append(Addition(into: left, from: right))
            return left
        }
        if reduce(chunks) == 0 {
            self.additions = additions
            isAligned = true
        } else {
            self.additions = (1..<leaves.count).map { Addition(into: 0, from: $0) }
            isAligned = false
        }
    }

    /// Runs the additions over Float buffers of `count` values, in parallel over slices of
    /// the elements (each element still follows the same tree). The total lands in leaves[0].
    public func sum(_ buffers: [UnsafeMutablePointer<Float>], count: Int, threads: Int) {
        sum(buffers, elements: 0..<count, threads: threads)
    }

    /// The same over the elements `elements` only (one part of the parameter table).
    public func sum(_ buffers: [UnsafeMutablePointer<Float>], elements: Range<Int>, threads: Int) {
        guard !additions.isEmpty, !elements.isEmpty else { return }
        let count = elements.count
        let sliceCount = max(1, min(threads, count / 65_536))
        let sliceLength = (count + sliceCount - 1) / sliceCount
        let additions = self.additions
        DispatchQueue.concurrentPerform(iterations: sliceCount) { slice in
            let begin = elements.lowerBound + slice * sliceLength
            let end = min(elements.upperBound, begin + sliceLength)
            guard begin < end else { return }
            for a in additions {
                let into = buffers[a.into] + begin, from = buffers[a.from] + begin
                for i in 0..<(end - begin) { into[i] += from[i] }
            }
        }
    }

    /// The largest nodes of the tree over `root` that lie inside `block`, in order: a party
    /// holding `block` sums each of them through its own subtree, so that any contiguous split
    /// of the chunks, aligned or not, yields leaves that are all tree nodes.
    public static func nodes(covering block: Range<Int>, in root: Range<Int>) -> [Range<Int>] {
        func visit(_ node: Range<Int>) -> [Range<Int>] {
            if node.lowerBound >= block.lowerBound && node.upperBound <= block.upperBound { return [node] }
            guard node.count > 1, node.lowerBound < block.upperBound, node.upperBound > block.lowerBound else { return [] }
            let middle = node.lowerBound + node.count / 2
            return visit(node.lowerBound..<middle) + visit(middle..<node.upperBound)
        }
        return visit(root)
    }

    /// The same tree over scalars (loss sums).
    public func sum(_ values: [Double]) -> Double {
        var v = values
        for a in additions { v[a.into] += v[a.from] }
        return v[0]
    }
}
