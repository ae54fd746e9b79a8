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
        let run = try runEmulatedFleet(config, delays: Array(repeating: ChunkDelay(milliseconds: 20), count: 3)
                                                + [ChunkDelay(milliseconds: 20, factor: 4)])
        let (coordinator, fast, slow) = (run.coordinator, Array(run.workers.prefix(3)), run.workers[3])

        // 20/20/20/80 ms per chunk: after the 5-step window, 2/2/2/2 (160 ms a step) becomes
        // 3/2/2/1 in some rank order (80 ms).
        let rank = try XCTUnwrap(slow.worker.rank)
        let line = try XCTUnwrap(coordinator.logs.line(containing: ["rebalanced chunks at step"]), coordinator.logs.text)
        XCTAssertTrue(line.contains("worker \(rank) 2→1"), line)
        XCTAssertEqual(try lastBlock(of: slow, workers: 4), 1, "the slow worker's last assignment: \(slow.logs.text)")
        XCTAssertEqual(try fast.map { try lastBlock(of: $0, workers: 4) }.sorted(), [2, 2, 3])

        try assertSameBytes(run)
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

}
