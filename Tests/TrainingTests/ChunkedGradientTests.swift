import Foundation
import Recurrent
import TestSupport
@testable import Training
import XCTest

/// `ChunkedGradient`, the per-chunk slabs and fixed-tree sums that the language model's and
/// the classifier's engines share: its node sums are those of the `ReductionTree` over the
/// chunks for any thread count and any block, and both engines give, for any thread count,
/// the bits of their single-chunk gradients summed through the tree.
final class ChunkedGradientTests: XCTestCase {
    typealias F = TrainingFixtures

    /// A chunk's values depend only on its global index: (P) floats of mixed magnitudes, so
    /// that the order of additions shows in the bits.
    static func chunkValues(_ chunk: Int, count: Int) -> [Float] {
        (0..<count).map { e in Float(chunk + 1) * 1e-3 + Float((e * 7919 + chunk * 104_729) % 1000) * 0.37 }
    }

    /// Fills `chunked` as an engine would (each thread its own chunks) and sums it.
    static func fill(_ chunked: ChunkedGradient, block: Range<Int>) -> [[Float]] {
        let count = chunked.parameterCount
        chunked.onEachThread { thread in
            for chunk in chunked.threadChunks[thread] {
                let slab = chunked.clearedSlab(chunk)
                for (e, v) in chunkValues(block.lowerBound + chunk, count: count).enumerated() { slab[e] += v }
                chunked.setLoss(Double(block.lowerBound + chunk) + 0.1, ofChunk: chunk)
            }
        }
        chunked.sumNodes(elements: 0..<count)
        _ = chunked.sumLoss()
        return chunked.nodes.indices.map { Array(UnsafeBufferPointer(start: chunked.gradient(ofNode: $0), count: count)) }
    }

    func testNodeSumsAreTheTreesForAnyThreadsAndBlock() {
        let count = 70_000, chunkCount = 8   // > 65,536 values: the tree's sum runs on several slices
        for block in [0..<8, 0..<3, 3..<8, 5..<6, 2..<7] {
            let expectedNodes = ReductionTree.nodes(covering: block, in: 0..<chunkCount)
            let expected = expectedNodes.map { node -> [Float] in
                var leaves = node.map { Self.chunkValues($0, count: count) }
                let tree = ReductionTree(leaves: node.map { $0..<($0 + 1) }, over: node)
                for a in tree.additions { for e in 0..<count { leaves[a.into][e] += leaves[a.from][e] } }
                return leaves[0]
            }
            for threads in 1...(block.count + 1) {
                let chunked = ChunkedGradient(parameterCount: count, block: block, chunkCount: chunkCount, threads: threads)
                XCTAssertEqual(chunked.threads, min(threads, block.count))
                XCTAssertEqual(chunked.nodes, expectedNodes)
                XCTAssertEqual(Self.fill(chunked, block: block).map(F.bits), expected.map(F.bits), "block \(block), \(threads) thread(s)")
                let losses = expectedNodes.map { node in
                    ReductionTree(leaves: node.map { $0..<($0 + 1) }, over: node).sum(node.map { Double($0) + 0.1 })
                }
                XCTAssertEqual(F.bits(chunked.nodeLoss), F.bits(losses))
            }
        }
    }

    /// One step of `engine`: the summed gradient and loss.
    static func step(_ engine: any GradientComputing, plan: RunPlan, step: Int, streams: Int) -> (gradient: [Float], loss: Double) {
        let parameters = ParameterInitializer.initialize(plan.layout, seed: 5)
        let state = RecurrentState<Float>(config: plan.model, streams: streams)
        let (loss, gradient) = parameters.withUnsafeBufferPointer {
            engine.computeGradient(parameters: $0.baseAddress!, step: step, stepInEpoch: plan.position(globalStep: step).stepInEpoch,
                                   from: state, into: state, early: nil)
        }
        return (Array(UnsafeBufferPointer(start: gradient, count: plan.layout.count)), loss)
    }

    /// Each chunk computed alone (an engine over that one chunk), its gradient and loss summed
    /// through the tree over all chunks: what any engine over the whole batch must give.
    static func chunkByChunk(_ plan: RunPlan, step: Int) -> (gradient: [Float], loss: Double) {
        let n = plan.config.chunkStreams
        let leaves = (0..<plan.chunkCount).map { Self.step(plan.engine(block: ($0 * n)..<($0 * n + n), threads: 1), plan: plan, step: step, streams: n) }
        let tree = ReductionTree(leaves: (0..<plan.chunkCount).map { $0..<($0 + 1) }, over: 0..<plan.chunkCount)
        var gradients = leaves.map(\.gradient)
        for a in tree.additions { for e in gradients[a.into].indices { gradients[a.into][e] += gradients[a.from][e] } }
        return (gradients[0], tree.sum(leaves.map(\.loss)))
    }

    func testBothTasksSumTheirChunksThroughTheTreeForAnyThreadCount() throws {
        var classifier = F.config(cell: .gru, layers: 2, hidden: 6, streams: 8, chunkStreams: 1)
        classifier.task = .classify
        classifier.bidirectional = true
        let plans = [
            ("language model", try RunPlan(config: F.config(cell: .lstm, layers: 2, hidden: 6, streams: 8, chunkStreams: 1),
                                           corpus: F.playCorpus(characters: 2_000))),
            ("classifier", try RunPlan(config: classifier, corpus: Corpus(text: BuiltinLabelled.text(count: 60), name: "builtin-60"))),
        ]
        for (task, plan) in plans {
            XCTAssertEqual(plan.chunkCount, 8)
            for step in [0, plan.stepsPerEpoch + 1] {
                let expected = Self.chunkByChunk(plan, step: step)
                XCTAssertTrue(expected.gradient.contains { $0 != 0 }, task)
                for threads in 1...8 {
                    let engine = plan.engine(block: 0..<8, threads: threads)
                    let got = Self.step(engine, plan: plan, step: step, streams: 8)
                    XCTAssertEqual(engine.nodes, [0..<8], task)
                    XCTAssertEqual(F.bits(got.gradient), F.bits(expected.gradient), "\(task), step \(step), \(threads) thread(s)")
                    XCTAssertEqual(got.loss.bitPattern, expected.loss.bitPattern, "\(task), step \(step), \(threads) thread(s)")
                }
            }
        }
    }
}
