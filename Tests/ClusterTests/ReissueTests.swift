import Foundation
import XCTest
@testable import Cluster
import Training

/// Speculative re-issue within a step (`--balance on`, one parameter server) in real runs:
/// a worker that suddenly becomes 8× slower has its nodes computed by idle workers, the run
/// goes on without waiting for it, and the weights keep the `--workers 1` bytes.
final class ReissueTests: ClusterTestCase {
    func testATransientStragglersNodesAreReissuedAndTheBytesStay() throws {
        var config = ClusterFixtures.tinyConfig(steps: 24)
        config.chunkStreams = 1   // N = 8: 8 chunks, 2 per worker to begin with
        let reference = try ClusterFixtures.localReference(config: config, directory: try temporaryDirectory())

        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        let coordinator = try startCoordinator(session, workers: 4)
        let fast = try (0..<3).map { _ in try startWorker(coordinator.endpoint, chunkDelay: ChunkDelay(milliseconds: 20)) }
        // 20 ms per chunk, 160 ms from step 8 to step 14: its 2-chunk block takes 320 ms
        // while the others are idle after 40.
        let slow = try startWorker(coordinator.endpoint, chunkDelay: ChunkDelay(milliseconds: 20, factor: 8, slowSteps: 8...14))
        let summary = try XCTUnwrap(coordinator.wait(timeout: 90)).get()
        XCTAssertEqual(summary.steps, 24)
        for worker in fast + [slow] {
            XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get(), worker.logs.text)
        }

        // The slow worker's nodes went to others during its slow steps (a loaded machine may
        // add a re-issue of a fast worker now and then: it costs no bit either).
        let rank = try XCTUnwrap(slow.worker.rank)
        let fromSlow = coordinator.logs.lines.filter { line in
            line.contains("re-issued chunks") && line.contains("from worker \(rank) ") && (8...15).contains { line.contains("of step \($0) ") }
        }
        XCTAssertGreaterThanOrEqual(fromSlow.count, 3, "slow: worker \(rank)\n" + coordinator.logs.text)
        let counts = try XCTUnwrap(summary.balancing)
        XCTAssertGreaterThan(counts.reissuedChunks, 0)

        let outcome = try ClusterFixtures.outcome(of: session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern), "re-issued nodes changed the weights")
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.checkpoint.appendingPathComponent("model.safetensors")))
    }
}
