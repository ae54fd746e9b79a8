import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// `ChunkDelay` (`recur work --emulate-chunk-ms MS --emulate-slowdown F@A-B`): the slowdown's
/// syntax, the wait per chunk at each step, and that the delayed engine's step is the real one
/// plus a wait for its chunks.
final class ChunkDelayTests: XCTestCase {
    func testSlowdownSyntax() throws {
        let always = try XCTUnwrap(ChunkDelay.slowdown("4"))
        XCTAssertEqual(always.factor, 4)
        XCTAssertNil(always.steps)
        let window = try XCTUnwrap(ChunkDelay.slowdown("2.5@10-20"))
        XCTAssertEqual(window.factor, 2.5)
        XCTAssertEqual(window.steps, 10...20)
        XCTAssertEqual(ChunkDelay.slowdown("3@7-7")?.steps, 7...7)
        for bad in ["", "0", "-2", "nan", "inf", "1001", "2@", "2@5", "2@0-3", "2@5-4", "2@a-b", "2@1-2-3", "x@1-2", "2@@1-2"] {
            XCTAssertNil(ChunkDelay.slowdown(bad), "accepted \"\(bad)\"")
        }
    }

    func testTheFactorAppliesFromStepAToBInclusiveOneBased() {
        let delay = ChunkDelay(milliseconds: 10, factor: 3, slowSteps: 2...3)
        // 0-based steps 0..<5 are the 1-based steps 1...5.
        XCTAssertEqual((0..<5).map { delay.millisecondsPerChunk(atStep: $0) }, [10, 30, 30, 10, 10])
        XCTAssertEqual(ChunkDelay(milliseconds: 10, factor: 3).millisecondsPerChunk(atStep: 99), 30)
        XCTAssertEqual(ChunkDelay(milliseconds: 10).millisecondsPerChunk(atStep: 0), 10)
    }

    /// Two chunks at 15 ms: the step takes at least 30 ms more, and its gradient and loss are
    /// the inner engine's bit for bit.
    func testTheDelayedStepIsTheRealOnePlusTheWaitOfItsChunks() throws {
        let plan = try RunPlan(config: TrainingFixtures.config(layers: 1, streams: 8, chunkStreams: 2),
                               corpus: TrainingFixtures.playCorpus(characters: 3_000))
        let plain = plan.engine(block: 4..<8, threads: 1)
        let delayed = ChunkDelayedCompute(plan.engine(block: 4..<8, threads: 1), delay: ChunkDelay(milliseconds: 15))
        XCTAssertEqual(delayed.chunkCount, 2)
        let parameters = ParameterInitializer.initialize(plan.layout, seed: 7)
        func run(_ engine: any GradientComputing) -> (loss: Double, gradient: [Float], seconds: Double) {
            let state = CarriedState(model: plan.model, streams: 4)
            let start = Date()
            let (loss, _) = parameters.withUnsafeBufferPointer {
                engine.computeGradient(parameters: $0.baseAddress!, step: 0, stepInEpoch: 0, from: state.recurrent,
                                       into: state.recurrent, early: nil)
            }
            let seconds = Date().timeIntervalSince(start)
            return (loss, Array(UnsafeBufferPointer(start: engine.gradient(ofNode: 0), count: plan.layout.count)), seconds)
        }
        let a = run(plain), b = run(delayed)
        XCTAssertEqual(a.loss.bitPattern, b.loss.bitPattern)
        XCTAssertEqual(a.gradient.map(\.bitPattern), b.gradient.map(\.bitPattern))
        XCTAssertGreaterThanOrEqual(b.seconds, 0.030)
    }
}
