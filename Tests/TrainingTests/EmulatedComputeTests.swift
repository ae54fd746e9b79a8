import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// `EmulatedCompute`, the stand-in for forward and backward of `recur work --emulate-compute`:
/// the pseudo-gradient has the engine's nodes and size, is the same on every run, is bounded,
/// hands the early slices over first, and leaves the carried state alone.
final class EmulatedComputeTests: XCTestCase {
    typealias F = TrainingFixtures

    /// LSTM 2×8, N = 8 in chunks of 2; the block of streams 4..<8 is two chunks (one node).
    func plan() throws -> RunPlan {
        try RunPlan(config: F.config(layers: 2, streams: 8, chunkStreams: 2), corpus: F.playCorpus(characters: 3_000))
    }

    /// One step of `compute` at `stepInEpoch`: the nodes' gradients, the slices `early` was
    /// given, and the summed loss.
    func step(_ compute: EmulatedCompute, stepInEpoch: Int, streams: Int, model: ModelConfig)
        -> (gradients: [[Float]], early: [Range<Int>], loss: Double) {
        let state = CarriedState(model: model, streams: streams)
        let parameters = [Float](repeating: 0, count: compute.layout.count)   // not read
        var early: [Range<Int>] = []
        let (loss, _) = parameters.withUnsafeBufferPointer {
            compute.computeGradient(parameters: $0.baseAddress!, step: stepInEpoch, stepInEpoch: stepInEpoch, from: state.recurrent,
                                    into: state.recurrent, early: { early.append($0) })
        }
        let gradients = compute.nodes.indices.map {
            Array(UnsafeBufferPointer(start: compute.gradient(ofNode: $0), count: compute.layout.count))
        }
        return (gradients, early, loss)
    }

    func testPseudoGradientIsFixedBoundedAndShapedLikeTheEngines() throws {
        let plan = try plan()
        let block = 4..<8
        let engine = GradientEngine(config: plan.model, data: try XCTUnwrap(plan.languageModel), streams: block,
                                    chunkStreams: 2, threads: 1)
        let a = EmulatedCompute(milliseconds: 1, plan: plan, streams: block)
        let b = EmulatedCompute(milliseconds: 1, plan: plan, streams: block)
        XCTAssertEqual(a.nodes, engine.nodes)
        XCTAssertEqual(a.earlySlices, engine.earlySlices)

        let first = step(a, stepInEpoch: 3, streams: block.count, model: plan.model)
        let again = step(b, stepInEpoch: 3, streams: block.count, model: plan.model)
        let next = step(a, stepInEpoch: 4, streams: block.count, model: plan.model)
        XCTAssertEqual(first.gradients.map(F.bits), again.gradients.map(F.bits), "the same step gives the same bits")
        XCTAssertNotEqual(first.gradients.map(F.bits), next.gradients.map(F.bits), "another step gives another gradient")
        XCTAssertEqual(first.early, [try XCTUnwrap(engine.earlySlices)], "the early slices are handed over once")

        // Bounded by bound · tokens of the node, and not all zero or one value.
        let tokens = Float(block.count * plan.config.window)
        let values = first.gradients[0]
        XCTAssertEqual(values.count, plan.layout.count)
        XCTAssertTrue(values.allSatisfy { $0.isFinite && abs($0) <= EmulatedCompute.bound * tokens })
        XCTAssertGreaterThan(Set(values).count, values.count / 2)
        // ln V per token: a uniform guess over the vocabulary.
        XCTAssertEqual(first.loss, Double(tokens) * log(Double(plan.model.vocabularySize)), accuracy: 1e-9)
    }

    func testCarriedStateIsLeftAsItIs() throws {
        let plan = try plan()
        let compute = EmulatedCompute(milliseconds: 1, plan: plan, streams: 0..<4)
        let state = CarriedState(model: plan.model, streams: 4)
        for i in 0..<state.recurrent.count { state.recurrent.h[i] = Float(i) }
        let before = state.values("h") + state.values("c")
        let parameters = [Float](repeating: 0, count: compute.layout.count)
        _ = parameters.withUnsafeBufferPointer {
            compute.computeGradient(parameters: $0.baseAddress!, step: 0, stepInEpoch: 0, from: state.recurrent, into: state.recurrent, early: nil)
        }
        XCTAssertEqual(F.bits(state.values("h") + state.values("c")), F.bits(before))
    }
}
