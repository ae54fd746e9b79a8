import Foundation
import XCTest
@testable import Cluster
import Training
import Wire

/// Speculative re-issue within a step (`--balance on`, one parameter server) in real runs:
/// a worker that suddenly becomes 8× slower has its nodes computed by idle workers, the run
/// goes on without waiting for it, and the weights keep the `--workers 1` bytes.
final class ReissueTests: ClusterTestCase {
    func testATransientStragglersNodesAreReissuedAndTheBytesStay() throws {
        var config = ClusterFixtures.tinyConfig(steps: 24)
        config.chunkStreams = 1   // N = 8: 8 chunks, 2 per worker to begin with
        // 20 ms per chunk, 160 ms from step 8 to step 14: its 2-chunk block takes 320 ms
        // while the others are idle after 40.
        let run = try runEmulatedFleet(config, delays: Array(repeating: ChunkDelay(milliseconds: 20), count: 3)
                                                + [ChunkDelay(milliseconds: 20, factor: 8, slowSteps: 8...14)], timeout: 90)
        let (coordinator, slow, summary) = (run.coordinator, run.workers[3], run.summary)

        // The slow worker's nodes went to others during its slow steps (a loaded machine may
        // add a re-issue of a fast worker now and then: it costs no bit either).
        let rank = try XCTUnwrap(slow.worker.rank)
        let fromSlow = coordinator.logs.lines.filter { line in
            line.contains("re-issued chunks") && line.contains("from worker \(rank) ") && (8...15).contains { line.contains("of step \($0) ") }
        }
        XCTAssertGreaterThanOrEqual(fromSlow.count, 3, "slow: worker \(rank)\n" + coordinator.logs.text)
        let counts = try XCTUnwrap(summary.balancing)
        XCTAssertGreaterThan(counts.reissuedChunks, 0)

        try assertSameBytes(run)
    }

    /// The same fleet with two parameter shards (`recur shard` processes): the shards take the
    /// helpers' pieces of the slow worker's nodes (two pieces per shard and node: the model has
    /// two layers), it falls behind and is welcomed again, and the bytes stay; no shard refuses
    /// a copy or a late push.
    func testWithShardsATransientStragglersNodesAreReissuedAndTheBytesStay() throws {
        var config = ClusterFixtures.tinyConfig(steps: 24)
        config.chunkStreams = 1
        let run = try runEmulatedFleet(config, delays: Array(repeating: ChunkDelay(milliseconds: 20), count: 3)
                                                + [ChunkDelay(milliseconds: 20, factor: 8, slowSteps: 8...14)], shards: 2, timeout: 90)
        let rank = try XCTUnwrap(run.workers[3].worker.rank)
        let fromSlow = run.coordinator.logs.lines.filter { line in
            line.contains("re-issued chunks") && line.contains("from worker \(rank) ") && (8...15).contains { line.contains("of step \($0) ") }
        }
        XCTAssertGreaterThanOrEqual(fromSlow.count, 3, "slow: worker \(rank)\n" + run.coordinator.logs.text)
        XCTAssertGreaterThan(try XCTUnwrap(run.summary.balancing).reissuedChunks, 0)
        for shard in run.shards {   // nothing refused but an old assignment's pushes in flight at a move
            let refused = (shard.stdout.lines + shard.stderr.lines).filter { $0.contains("rejected") && !$0.contains("not part of this shard's run") }
            XCTAssertEqual(refused, [], shard.transcript)
        }
        try assertSameBytes(run)
    }

    /// The same with the coordinator's re-issue, hold-back and release commands reaching the
    /// shards 150 ms late (and whatever it sends after them, in order), as on a loaded machine:
    /// they travel on other connections than the helpers' pushes and the held worker's hello,
    /// which then come first. The helper gets its `Reissue` only once every shard answered that
    /// it took the grant, so no copy is refused; a held worker gets its weights with the
    /// release whether its hello came before the hold or after; the bytes stay.
    func testWithShardsCommandsThatArriveLateStillLetEveryCopyInAndTheBytesStay() throws {
        var config = ClusterFixtures.tinyConfig(steps: 24)
        config.chunkStreams = 1
        let run = try runEmulatedFleet(config, delays: Array(repeating: ChunkDelay(milliseconds: 20), count: 3)
                                                + [ChunkDelay(milliseconds: 20, factor: 8, slowSteps: 8...14)], shards: 2, timeout: 90,
                                       shardLink: { LateCommands($1, delay: 0.15, kinds: [.reissue, .holdBack, .release]) })
        XCTAssertGreaterThan(try XCTUnwrap(run.summary.balancing).reissuedChunks, 0, run.coordinator.logs.text)
        for shard in run.shards {
            let refused = (shard.stdout.lines + shard.stderr.lines).filter { $0.contains("rejected") && !$0.contains("not part of this shard's run") }
            XCTAssertEqual(refused, [], shard.transcript)
        }
        try assertSameBytes(run)
    }

    /// `recur train --workers 4` with a worker 4× slower: every step record of `--log-jsonl`
    /// says what balancing did, and the final summary line gives the sums; with `--balance
    /// off` nothing moves and the counts are zero. The bytes are the same either way.
    func testStepRecordsAndTheSummaryCountRebalancesAndReissues() throws {
        let model = ["--hidden", "16", "--layers", "1", "--batch", "8", "--seq", "8", "--chunk", "1", "--steps", "16",
                     "--sample-length", "0", "--eval-every", "0", "--workers", "4", "--threads", "1", "--emulate-chunk-ms", "10,10,10,40"]
        var hashes: [Data] = []
        for balance in ["on", "off"] {
            let directory = try temporaryDirectory(), records = directory.appendingPathComponent("steps.jsonl")
            let train = try launch(["train", "--balance", balance, "--log-jsonl", records.path,
                                    "--checkpoint-dir", directory.appendingPathComponent("run").path] + model)
            XCTAssertEqual(train.waitForExit(timeout: 90), 0, train.transcript)
            let steps = try String(contentsOf: records, encoding: .utf8).split(separator: "\n").compactMap { line in
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            }.filter { $0["gradientNorm"] != nil || $0["gradient_norm"] != nil }
            XCTAssertEqual(steps.count, 16, train.transcript)
            let counts = try steps.map { try XCTUnwrap($0["balancing"] as? [String: Int], "a step record without balancing: \($0)") }
            let sum = { (key: String) in counts.map { $0[key] ?? 0 }.reduce(0, +) }
            let summary = try XCTUnwrap(train.stdout.line(containing: ["balancing:"]), train.transcript)
            XCTAssertTrue(summary.contains("\(sum("rebalances")) rebalance(s) moved \(sum("movedChunks")) chunk(s); \(sum("reissuedChunks")) chunk(s) re-issued"),
                          summary)
            if balance == "on" {
                XCTAssertGreaterThan(sum("rebalances") + sum("reissuedChunks"), 0, train.transcript)
            } else {
                XCTAssertEqual(sum("rebalances") + sum("movedChunks") + sum("reissuedChunks"), 0, train.transcript)
                XCTAssertNil(train.stdout.line(containing: ["re-issued chunks"]))
            }
            hashes.append(try Data(contentsOf: directory.appendingPathComponent("run/model.safetensors")))
        }
        XCTAssertEqual(hashes[0], hashes[1], "--balance changed the weights")
    }

    /// With parameter shards: `recur train --workers 4 --shards 2` with the fourth worker 4×
    /// slower. The balancer leaves it one chunk, which idle workers compute a second time: the
    /// shards take the helper's pieces (two per shard and node, the model has two layers), the
    /// slow worker falls behind and is welcomed again. The step records count the re-issues,
    /// and the weights are the `--workers 1` bytes.
    func testWithShardsLateNodesAreReissuedAndTheBytesStay() throws {
        let model = ["--hidden", "32", "--layers", "2", "--batch", "16", "--seq", "16", "--chunk", "2", "--steps", "30",
                     "--sample-length", "0", "--eval-every", "0", "--threads", "1"]
        let sharded = try temporaryDirectory(), reference = try temporaryDirectory()
        let records = sharded.appendingPathComponent("steps.jsonl")
        let train = try launch(["train", "--workers", "4", "--shards", "2", "--emulate-chunk-ms", "10,10,10,40", "--heartbeat-timeout", "10",
                                "--log-jsonl", records.path, "--checkpoint-dir", sharded.appendingPathComponent("run").path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 120), 0, train.transcript)
        XCTAssertNotNil(train.stdout.line(containing: ["re-issued chunks", "of step"]), train.transcript)
        let reissued = try String(contentsOf: records, encoding: .utf8).split(separator: "\n").compactMap { line in
            (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["balancing"] as? [String: Int]
        }.map { $0["reissuedChunks"] ?? 0 }.reduce(0, +)
        XCTAssertGreaterThan(reissued, 0, train.transcript)
        // A shard refuses nothing but the old assignment's pushes in flight at the move.
        let refused = train.transcript.split(separator: "\n").filter { $0.contains("] rejected") && !$0.contains("not part of this shard's run") }
        XCTAssertEqual(refused, [], "a shard refused a copy or a late push:\n" + train.transcript)
        let single = try launch(["train", "--workers", "1", "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(single.waitForExit(timeout: 90), 0, single.transcript)
        XCTAssertEqual(try Data(contentsOf: sharded.appendingPathComponent("run/model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")), "re-issue with shards changed the weights")
    }

    /// A worker that goes quiet while the others compute its chunks (re-issued) is still found
    /// silent after the heartbeat timeout and named; the run ends with the last completed step
    /// checkpointed, the bytes of an undisturbed run of that many steps.
    func testASilentWorkerWhoseChunksAreReissuedIsStillNamed() throws {
        let config = ClusterFixtures.tinyConfig(steps: 400)
        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 1.5)
        let fake = try FakeWorker(endpoint: coordinator.endpoint, identity: "goes-quiet")
        try fake.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [fake.name(rank: 0), "joined"]), coordinator.logs.text)
        _ = try startWorker(coordinator.endpoint, chunkDelay: ChunkDelay(milliseconds: 10))   // outlasts the timeout
        try fake.awaitWelcome()
        for _ in 0..<2 { try fake.send(.gradientPush(try fake.honestPush(for: try fake.awaitWeights()))) }
        // …and now it says nothing more: the real worker takes its chunks, step after step.
        let result = try XCTUnwrap(coordinator.wait(timeout: 30))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(fake.name(rank: 0)) stopped answering at step "), "\(error)")
        }
        XCTAssertNotNil(coordinator.logs.line(containing: ["re-issued chunks", "from \(fake.name(rank: 0))"]), coordinator.logs.text)
        let saved = try Checkpoint.read(from: directory)
        let steps = try XCTUnwrap(saved.training?.step)
        XCTAssertGreaterThan(steps, 2, "the run went on while the worker was quiet")
        var done = config
        done.steps = steps
        let reference = try ClusterFixtures.localReference(config: done, directory: try temporaryDirectory())
        XCTAssertTrue(saved.parameters == reference.values, "the checkpoint is not the state after step \(steps)")
    }
}

/// A coordinator's link to a shard that holds back each `ShardCommand` of `kinds`, and every
/// message sent after it, for `delay` seconds (in order: one connection keeps its order), as a
/// loaded machine or path would. Held messages leave on the link's next send or receive.
final class LateCommands: ClientTransport {
    private let inner: ClientTransport
    private let delay: Double
    private let kinds: Set<ShardCommand.Kind>
    private var queue: [(due: Double, bytes: [UInt8])] = []

    init(_ inner: ClientTransport, delay: Double, kinds: Set<ShardCommand.Kind>) {
        (self.inner, self.delay, self.kinds) = (inner, delay, kinds)
    }

    func send(_ body: UnsafeRawBufferPointer) throws {
        try flush()
        if queue.isEmpty, case .shardCommand(let command)? = try? WireCodec.decode(Array(body), limits: .standard), kinds.contains(command.kind) {
            queue.append((monotonicSeconds() + delay, Array(body)))
        } else if !queue.isEmpty {
            queue.append((queue.last!.due, Array(body)))
        } else {
            try inner.send(body)
        }
    }

    func receive(timeout: Double) throws -> Received? {
        try flush()
        return try inner.receive(timeout: min(timeout, 0.001))
    }

    private func flush() throws {
        while let first = queue.first, first.due <= monotonicSeconds() {
            queue.removeFirst()
            try first.bytes.withUnsafeBytes { try inner.send($0) }
        }
    }

    func close() { inner.close() }
    func discard() { inner.discard() }
}
