import Foundation
import XCTest
@testable import Cluster
import Training

/// `--balance on` in real runs: W = 4 workers over 8 chunks, one of them 4× slower
/// (`--emulate-chunk-ms`), gives the slow worker fewer chunks, and the weights keep the
/// `--workers 1` bytes, with and without parameter shards.
final class BalanceTests: ClusterTestCase {
    func testASlowWorkerGivesUpChunksAndTheWeightsKeepTheirBytes() throws {
        var config = ClusterFixtures.tinyConfig(steps: 20)
        config.chunkStreams = 1   // N = 8: 8 chunks, 2 per worker to begin with
        let reference = try ClusterFixtures.localReference(config: config, directory: try temporaryDirectory())

        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        let coordinator = try startCoordinator(session, workers: 4)
        let fast = try (0..<3).map { _ in try startWorker(coordinator.endpoint, chunkDelay: ChunkDelay(milliseconds: 20)) }
        let slow = try startWorker(coordinator.endpoint, chunkDelay: ChunkDelay(milliseconds: 20, factor: 4))
        let summary = try XCTUnwrap(coordinator.wait(timeout: 60)).get()
        XCTAssertEqual(summary.steps, 20)
        for worker in fast + [slow] {
            XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get(), worker.logs.text)
        }

        // 20/20/20/80 ms per chunk: after the 5-step window, 2/2/2/2 (160 ms a step) becomes
        // 3/2/2/1 in some rank order (80 ms).
        let rank = try XCTUnwrap(slow.worker.rank)
        let line = try XCTUnwrap(coordinator.logs.line(containing: ["rebalanced chunks at step"]), coordinator.logs.text)
        XCTAssertTrue(line.contains("worker \(rank) 2→1"), line)
        XCTAssertEqual(try lastBlock(of: slow), 1, "the slow worker's last assignment: \(slow.logs.text)")
        XCTAssertEqual(try fast.map(lastBlock(of:)).sorted(), [2, 2, 3])

        let outcome = try ClusterFixtures.outcome(of: session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern), "balancing changed the weights")
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.checkpoint.appendingPathComponent("model.safetensors")))
    }

    /// The same through `recur train --workers 4 --shards 2` (the hidden `--emulate-chunk-ms`
    /// slows the fourth worker started): the shards learn the new block sizes in `reassign`,
    /// and the bytes are the `--workers 1` run's.
    func testAShardedLocalRunMovesChunksAndKeepsTheBytes() throws {
        let model = ["--hidden", "32", "--layers", "2", "--batch", "16", "--seq", "16", "--chunk", "2", "--steps", "30",
                     "--sample-length", "0", "--eval-every", "0"]
        let balanced = try temporaryDirectory(), reference = try temporaryDirectory()
        let train = try launch(["train", "--workers", "4", "--threads", "1", "--shards", "2", "--emulate-chunk-ms", "10,10,10,40",
                                "--heartbeat-timeout", "10", "--checkpoint-dir", balanced.path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 90), 0, train.transcript)
        XCTAssertNotNil(train.stdout.line(containing: ["rebalanced chunks at step", "2→1"]), train.transcript)
        let single = try launch(["train", "--workers", "1", "--threads", "1", "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(single.waitForExit(timeout: 90), 0, single.transcript)
        XCTAssertEqual(try Data(contentsOf: balanced.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")), "balancing changed the weights")
    }

    /// Bad values of the emulation and balance flags end in one line naming the flag, exit 64.
    func testBadEmulationAndBalanceFlagsGiveOneLineAndExit64() throws {
        let work = ["work", "--connect", "tcp://127.0.0.1:9"]
        let cases: [(arguments: [String], flag: String)] = [
            (work + ["--emulate-chunk-ms", "-1"], "--emulate-chunk-ms"),
            (work + ["--emulate-chunk-ms", "nan"], "--emulate-chunk-ms"),
            (work + ["--emulate-chunk-ms", "4000000"], "--emulate-chunk-ms"),
            (work + ["--emulate-slowdown", "2"], "--emulate-slowdown"),
            (work + ["--emulate-chunk-ms", "5", "--emulate-slowdown", "2@5-3"], "--emulate-slowdown"),
            (work + ["--emulate-chunk-ms", "5", "--emulate-slowdown", "0"], "--emulate-slowdown"),
            (work + ["--emulate-chunk-ms", "5", "--emulate-slowdown", "2@0-4"], "--emulate-slowdown"),
            (["train", "--workers", "3", "--emulate-chunk-ms", "5,5"], "--emulate-chunk-ms"),
            (["train", "--workers", "1", "--emulate-chunk-ms", "5"], "--emulate-chunk-ms"),
            (["serve", "--balance", "maybe"], "--balance"),
        ]
        for (arguments, flag) in cases {
            let process = try launch(arguments)
            XCTAssertEqual(process.waitForExit(timeout: 10), 64, process.transcript)
            XCTAssertEqual(process.stderr.lines.filter { !$0.isEmpty }.count, 1, process.transcript)
            XCTAssertTrue(process.stderr.text.contains(flag), process.transcript)
        }
    }

    /// Chunks (= streams here) of a worker's last "worker r of W: streams a..<b" line.
    private func lastBlock(of worker: WorkerHarness) throws -> Int {
        let line = try XCTUnwrap(worker.logs.lines.last { $0.contains(" of 4: streams ") }, worker.logs.text)
        let range = try XCTUnwrap(line.range(of: "streams "))
        let bounds = line[range.upperBound...].prefix { $0 != "," }.components(separatedBy: "..<").compactMap { Int($0) }
        XCTAssertEqual(bounds.count, 2, line)
        return bounds[1] - bounds[0]
    }
}
