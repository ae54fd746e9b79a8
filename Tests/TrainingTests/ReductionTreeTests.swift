import Foundation
import TestSupport
import Training
import XCTest

/// The fixed summation order: leaves that are tree nodes reproduce the chunk-by-chunk tree bit
/// for bit; other splits fall back to left to right.
final class ReductionTreeTests: XCTestCase {
    typealias F = TrainingFixtures

    /// C chunk slabs of `count` values mixing 1e8 and 1e-3 magnitudes, so that the order of
    /// Float additions changes the result.
    static func adversarialChunks(_ C: Int, count: Int, seed: UInt64 = 1) -> [[Float]] {
        var random = FixtureRandom(seed: seed)
        return (0..<C).map { _ in
            (0..<count).map { _ in
                switch random.index(4) {
                case 0: return Float(random.uniform(1) > 0 ? 1e8 : -1e8)
                case 1: return Float(random.uniform(1e8))
                default: return Float(random.uniform(1e-3))
                }
            }
        }
    }

    /// Runs `tree` over copies of `leaves` and returns leaf 0.
    static func sum(_ tree: ReductionTree, _ leaves: [[Float]], threads: Int = 1) -> [Float] {
        let count = leaves[0].count
        let buffers = leaves.map { leaf -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(from: leaf, count: count)
            return p
        }
        defer { buffers.forEach { $0.deallocate() } }
        tree.sum(buffers, count: count, threads: threads)
        return Array(UnsafeBufferPointer(start: buffers[0], count: count))
    }

    static func singletons(_ range: Range<Int>) -> [Range<Int>] { range.map { $0..<($0 + 1) } }

    func testEightChunkTreeShape() {
        let tree = ReductionTree(leaves: Self.singletons(0..<8), over: 0..<8)
        XCTAssertTrue(tree.isAligned)
        XCTAssertEqual(tree.additions.map { [$0.into, $0.from] },
                       [[0, 1], [2, 3], [0, 2], [4, 5], [6, 7], [4, 6], [0, 4]])
        // Odd counts split at a + (b − a)/2: 0..<3 is 0..<1 + 1..<3.
        let six = ReductionTree(leaves: Self.singletons(0..<6), over: 0..<6)
        XCTAssertEqual(six.additions.map { [$0.into, $0.from] }, [[1, 2], [0, 1], [4, 5], [3, 4], [0, 3]])
    }

    /// 4 workers of 2 chunks each: every worker sums its pair through its subtree, then the top
    /// tree sums the 4 partial sums; the result is the 8-leaf tree's, bit for bit, and not the
    /// left-to-right sum (the values make order matter).
    func testAlignedWorkerLeavesAreBitIdenticalToTheChunkTree() {
        let chunks = Self.adversarialChunks(8, count: 1_000)
        let reference = Self.sum(ReductionTree(leaves: Self.singletons(0..<8), over: 0..<8), chunks)

        var partials: [[Float]] = []
        for w in 0..<4 {
            let block = (2 * w)..<(2 * w + 2)
            let local = ReductionTree(leaves: Self.singletons(block), over: block)
            XCTAssertTrue(local.isAligned)
            partials.append(Self.sum(local, Array(chunks[block])))
        }
        let top = ReductionTree(leaves: [0..<2, 2..<4, 4..<6, 6..<8], over: 0..<8)
        XCTAssertTrue(top.isAligned)
        XCTAssertEqual(F.bits(Self.sum(top, partials)), F.bits(reference))

        // 2 workers of 4 chunks, and one worker holding half while two hold quarters.
        let halves = [0..<4, 4..<8].map { Self.sum(ReductionTree(leaves: Self.singletons($0), over: $0), Array(chunks[$0])) }
        XCTAssertEqual(F.bits(Self.sum(ReductionTree(leaves: [0..<4, 4..<8], over: 0..<8), halves)), F.bits(reference))
        let mixed = [halves[0], partials[2], partials[3]]
        let mixedTree = ReductionTree(leaves: [0..<4, 4..<6, 6..<8], over: 0..<8)
        XCTAssertTrue(mixedTree.isAligned)
        XCTAssertEqual(F.bits(Self.sum(mixedTree, mixed)), F.bits(reference))

        // The fixture is adversarial: summing left to right gives other bits.
        var leftToRight = chunks[0]
        for c in chunks.dropFirst() { for i in leftToRight.indices { leftToRight[i] += c[i] } }
        XCTAssertNotEqual(F.bits(leftToRight), F.bits(reference), "fixture values do not expose the order")
    }

    /// Leaves that are not tree nodes: left to right, reported as not aligned.
    func testUnalignedLeavesFallBackToLeftToRight() {
        let chunks = Self.adversarialChunks(8, count: 500, seed: 2)
        for leaves in [[0..<3, 3..<8], [0..<2, 2..<5, 5..<8], [0..<1, 1..<4, 4..<8]] {
            let tree = ReductionTree(leaves: leaves, over: 0..<8)
            XCTAssertFalse(tree.isAligned, "\(leaves)")
            XCTAssertEqual(tree.additions.map { [$0.into, $0.from] }, (1..<leaves.count).map { [0, $0] })
            let partials = leaves.map { range -> [Float] in
                var s = chunks[range.lowerBound]
                for c in chunks[(range.lowerBound + 1)..<range.upperBound] { for i in s.indices { s[i] += c[i] } }
                return s
            }
            var expected = partials[0]
            for p in partials.dropFirst() { for i in expected.indices { expected[i] += p[i] } }
            XCTAssertEqual(F.bits(Self.sum(tree, partials)), F.bits(expected), "\(leaves)")
        }
        // Six chunks as three workers of two: 0..<2 is not a node of 0..<3 + 3..<6.
        XCTAssertFalse(ReductionTree(leaves: [0..<2, 2..<4, 4..<6], over: 0..<6).isAligned)
        XCTAssertTrue(ReductionTree(leaves: [0..<3, 3..<6], over: 0..<6).isAligned)
        // A worker block off the origin reduces its own chunks with indices local to its leaves.
        let block = ReductionTree(leaves: Self.singletons(4..<8), over: 4..<8)
        XCTAssertEqual(block.additions.map { [$0.into, $0.from] }, [[0, 1], [2, 3], [0, 2]])
    }

    /// Splitting the elements over threads keeps every element on the same tree.
    func testThreadedSumEqualsSingleThreaded() {
        let count = 3 * 65_536 + 17
        let chunks = Self.adversarialChunks(4, count: count, seed: 3)
        let tree = ReductionTree(leaves: Self.singletons(0..<4), over: 0..<4)
        XCTAssertEqual(F.bits(Self.sum(tree, chunks, threads: 3)), F.bits(Self.sum(tree, chunks, threads: 1)))
    }

    /// The scalar version (loss sums) follows the same tree.
    func testScalarSumFollowsTheTree() {
        let values: [Double] = [1e17, 1, -1e17, 1, 3, 1e-3, 5, 7]
        let tree = ReductionTree(leaves: Self.singletons(0..<8), over: 0..<8)
        let expected = (((1e17 + 1.0) + (-1e17 + 1.0)) + ((3 + 1e-3) + (5.0 + 7.0)))
        XCTAssertEqual(tree.sum(values).bitPattern, expected.bitPattern)
        XCTAssertNotEqual(values.reduce(0, +).bitPattern, expected.bitPattern, "fixture order matters")
        let unaligned = ReductionTree(leaves: [0..<3, 3..<8], over: 0..<8)
        XCTAssertEqual(unaligned.sum([2, 3]), 5)
    }
}

final class ReductionTreeCoverTests: XCTestCase {
    /// The largest tree nodes inside a block: the block itself when it is a node, else its
    /// aligned pieces, in order; every contiguous split of 8 chunks gives tree nodes only.
    func testNodesCoveringABlockAreTheLargestTreeNodesInsideIt() {
        XCTAssertEqual(ReductionTree.nodes(covering: 0..<8, in: 0..<8), [0..<8])
        XCTAssertEqual(ReductionTree.nodes(covering: 0..<3, in: 0..<8), [0..<2, 2..<3])
        XCTAssertEqual(ReductionTree.nodes(covering: 3..<6, in: 0..<8), [3..<4, 4..<6])
        XCTAssertEqual(ReductionTree.nodes(covering: 1..<7, in: 0..<8), [1..<2, 2..<4, 4..<6, 6..<7])
        XCTAssertEqual(ReductionTree.nodes(covering: 2..<3, in: 0..<5), [2..<3])
        for workers in 1...8 {
            let blocks = StreamLayout.contiguousBlocks(of: 0..<8, parts: workers)
            let leaves = blocks.flatMap { ReductionTree.nodes(covering: $0, in: 0..<8) }
            XCTAssertEqual(leaves.first?.lowerBound, 0)
            XCTAssertTrue(ReductionTree(leaves: leaves, over: 0..<8).isAligned, "W = \(workers): \(leaves)")
        }
    }
}
