import Foundation
import XCTest
import Cluster
import Recurrent
import Training

/// Sharded parameter servers (`--shards S`): the weights after N steps are the same bytes for
/// every S and W as in-process training; a checkpoint has one format whatever S; a shard that
/// dies ends the run.
final class ShardTests: ClusterTestCase {
    private let model = ["--hidden", "64", "--layers", "2", "--batch", "16", "--seq", "16", "--chunk", "2",
                         "--sample-length", "0"]

    private func train(workers: Int, shards: Int, steps: Int, directory: URL, extra: [String] = []) throws -> Data {
        let run = try launch(["train", "--workers", "\(workers)", "--threads", "1", "--shards", "\(shards)", "--steps", "\(steps)",
                              "--checkpoint-dir", directory.path] + model + extra)
        XCTAssertEqual(run.waitForExit(timeout: 120), 0, run.transcript)
        if shards > 1 { XCTAssertNotNil(run.stdout.line(containing: ["\(shards) parameter shards ready"]), run.transcript) }
        return try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
    }

    /// W ∈ {1, 2, 4} × S ∈ {1, 2, 4}, 20 steps with an evaluation and a checkpoint every 5
    /// (mid-run state fetches while the shards already serve the next step): every checkpoint
    /// equals in-process training's.
    /// A shard's range comes in one piece, or in two when the early run (top layer and head)
    /// starts inside it: that run's share first, the rest second; together they tile the range.
    func testPushPiecesSplitARangeAtTheEarlyRun() throws {
        XCTAssertEqual(SlabPartition.pushPieces(of: 10..<20, earlyFrom: nil), [10..<20])
        XCTAssertEqual(SlabPartition.pushPieces(of: 10..<20, earlyFrom: 10), [10..<20], "all early: one piece")
        XCTAssertEqual(SlabPartition.pushPieces(of: 10..<20, earlyFrom: 20), [10..<20], "none early: one piece")
        XCTAssertEqual(SlabPartition.pushPieces(of: 10..<20, earlyFrom: 14), [14..<20, 10..<14])
        // The model of the equality test below: 2 and 4 shards cut it right where the early
        // run starts (layer 1), 3 shards inside it, so that run pushes in two pieces.
        var config = TrainingConfig()
        config.cell = .lstm
        config.layers = 2
        config.hidden = 64
        let layout = ParameterLayout(config.model(vocabularySize: 64))
        let e = try XCTUnwrap(config.earlyElements(of: layout))
        for shards in [2, 3, 4] {
            let ranges = SlabPartition(layout: layout, shards: shards).shards
            XCTAssertEqual(ranges.contains { SlabPartition.pushPieces(of: $0, earlyFrom: e).count == 2 }, shards == 3, "\(shards) shards")
        }
        config.task = .classify
        XCTAssertNil(config.earlyElements(of: layout), "a classifier hands nothing over early")
    }

    func testEveryWorkerAndShardCountGivesTheInProcessBytes() throws {
        let cadence = ["--checkpoint-every", "5", "--eval-every", "5"]
        let reference = try train(workers: 1, shards: 1, steps: 20, directory: try temporaryDirectory(), extra: cadence)
        for shards in [1, 2, 4] {
            for workers in [1, 2, 4] where workers > 1 || shards > 1 {
                let bytes = try train(workers: workers, shards: shards, steps: 20, directory: try temporaryDirectory(), extra: cadence)
                XCTAssertEqual(bytes, reference, "--workers \(workers) --shards \(shards) changed the weights")
            }
        }
        // Three shards: one range takes each node's gradient in two pieces (see above).
        let three = try train(workers: 2, shards: 3, steps: 20, directory: try temporaryDirectory(), extra: cadence)
        XCTAssertEqual(three, reference, "--workers 2 --shards 3 changed the weights")
    }

    /// The shards broadcast step s+1's weights as soon as they have applied step s, so the
    /// workers push step s+1 while the coordinator still evaluates step s. An evaluation longer
    /// than the servicing interval (heartbeat timeout 1 s → 0.2 s; the whole validation split of
    /// a 2×128 LSTM) used to reject those pushes as "between steps", and the run waited forever
    /// for step s+1. They are kept for the next gather: the run ends with the in-process bytes.
    func testPushesOfTheNextStepDuringAnEvaluationAreKept() throws {
        let slowEvaluation = ["--hidden", "128", "--heartbeat-timeout", "1", "--eval-every", "2", "--eval-chars", "0"]
        let reference = try train(workers: 1, shards: 1, steps: 6, directory: try temporaryDirectory(), extra: slowEvaluation)
        let directory = try temporaryDirectory()
        let run = try launch(["train", "--workers", "2", "--threads", "1", "--shards", "2", "--steps", "6",
                              "--checkpoint-dir", directory.path] + model + slowEvaluation)
        XCTAssertEqual(run.waitForExit(timeout: 120), 0, run.transcript)
        XCTAssertNil(run.stdout.line(containing: ["between steps"]), run.transcript)
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("model.safetensors")), reference)
    }

    /// A checkpoint has one format whatever S: 10 steps with S = 4, then 10 more with S = 1
    /// after --resume (and the other way round) equal 20 uninterrupted steps.
    func testResumeAcrossShardCountsIsExact() throws {
        let reference = try train(workers: 1, shards: 1, steps: 20, directory: try temporaryDirectory())
        for (first, second) in [(4, 1), (1, 4)] {
            let directory = try temporaryDirectory()
            _ = try train(workers: 2, shards: first, steps: 10, directory: directory)
            let bytes = try train(workers: 2, shards: second, steps: 20, directory: directory, extra: ["--resume"])
            XCTAssertEqual(bytes, reference, "--shards \(first) then --resume with --shards \(second) changed the weights")
        }
    }

    /// A shard killed mid-run ends the run with an error naming it, within the heartbeat
    /// bound; the last periodic checkpoint stays on disk.
    func testAKilledShardEndsTheRun() throws {
        let directory = try temporaryDirectory()
        let run = try launch(["train", "--workers", "2", "--threads", "1", "--shards", "2", "--steps", "1000000",
                              "--checkpoint-every", "10", "--checkpoint-dir", directory.path, "--heartbeat-timeout", "3"] + model)
        XCTAssertNotNil(run.stdout.waitForLine(containing: ["step 20 checkpoint"], timeout: 60), run.transcript)
        let shardLine = try XCTUnwrap(run.stdout.line(containing: ["shard 1 of 2: elements"]), run.transcript)
        let pid = try XCTUnwrap(Self.pid(inPrefixOf: shardLine), shardLine)
        kill(pid, SIGKILL)
        let killed = Date()
        let status = run.waitForExit(timeout: 60)
        XCTAssertNotNil(status, run.transcript)
        XCTAssertNotEqual(status, 0, run.transcript)
        XCTAssertLessThan(Date().timeIntervalSince(killed), 30, "the run outlived a dead shard by far more than the heartbeat bound")
        XCTAssertTrue(run.transcript.contains("shard process \(pid) exited with status 137"), run.transcript)
        let state = try String(contentsOf: directory.appendingPathComponent("state.json"), encoding: .utf8)
        XCTAssertTrue(state.contains("\"step\":"), "no checkpoint left in \(directory.path)")
    }

    /// Two `recur shard` processes; one worker reaches both, the other only shard 0 (it dials a
    /// port where nothing listens instead of shard 1). The coordinator refuses that worker and
    /// ends the run naming it and the shard, within the heartbeat bound: no hang.
    func testAWorkerThatReachesOnlySomeShardsIsRefused() throws {
        let endpoints = try (0..<2).map { _ in try freeLoopbackEndpoint() }
        let shards = try endpoints.map { try launch(["shard", "--bind", $0, "--heartbeat-timeout", "3"]) }
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(steps: 20), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: try temporaryDirectory()))
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 3, shardEndpoints: endpoints)
        _ = try startWorker(coordinator.endpoint)
        let nowhere = try freeLoopbackEndpoint()
        let partial = try startWorker(coordinator.endpoint, shardEndpoint: { $0 == endpoints[1] ? nowhere : $0 })
        let result = try XCTUnwrap(coordinator.wait(timeout: 30))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertTrue("\(error)".contains("did not reach parameter shard 1 (\(endpoints[1]))"), "\(error)")
        }
        if case .failure(let error)? = partial.wait(timeout: 10) {
            XCTAssertTrue("\(error)".contains("did not reach parameter shard 1"), "\(error)")
        } else {
            XCTFail("the worker that reached only shard 0 was not refused: \(partial.logs.text)")
        }
        for shard in shards { XCTAssertEqual(shard.waitForExit(timeout: 10), 0, shard.transcript) }
    }

    /// A shard reports each worker's hello to the coordinator (`workerJoined`) and broadcasts
    /// the step's weights once every hello is in, so a worker may compute and push, and a shard
    /// report the step's norm blocks, before the coordinator has read the other shards' hello
    /// reports. Here the coordinator reads what shard 1 says 0.5 s late (shard 0 at once), so
    /// at every assignment the workers' pushes and shard 0's norm blocks come first. Both used to
    /// be dropped while the coordinator waited for the reports: the step then waited forever for
    /// the pushes ("is slow: no gradient for step 1 …, but its heartbeats arrive"; also after a
    /// lost or joining worker: the join hang of scripts/test-cluster), or the run ended with
    /// "shard 0 sent no gradient norm" (after a restart). Both are kept: the run ends with the
    /// in-process bytes.
    func testPushesAndNormsThatOvertakeTheShardsHelloReportsAreKept() throws {
        let (reference, endpoints, shards, directory, session) = try twoShardRun(ClusterFixtures.tinyConfig(steps: 4))
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 5, shardEndpoints: endpoints,
                                               shardLink: { endpoint, link in LateLink(link, delay: endpoint == endpoints[1] ? 0.5 : 0) })
        let workers = try (0..<2).map { _ in try startWorker(coordinator.endpoint) }
        let result = try XCTUnwrap(coordinator.wait(timeout: 40))
        XCTAssertEqual(try result.get().steps, 4, coordinator.logs.text)
        XCTAssertEqual(try ClusterFixtures.outcome(of: session, checkpoint: directory).values, reference.values)
        for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get(), worker.logs.text) }
        for shard in shards { XCTAssertEqual(shard.waitForExit(timeout: 10), 0, shard.transcript) }
    }

    /// A worker joins a sharded run whose coordinator hears its shards 0.3 s late, so the
    /// shards have broadcast (and often summed) the step at which the coordinator reassigns:
    /// the third worker gets its share and the run ends with the in-process bytes. (The
    /// ordering that made a shard exit in scripts/test-cluster's join case, a norm report of
    /// the old assignment taken after the reassign, is pinned by ShardLinksTests.)
    func testAWorkerJoinsAShardedRunWhoseShardsRanAhead() throws {
        let (reference, endpoints, shards, directory, session) = try twoShardRun(ClusterFixtures.tinyConfig(steps: 8))
        let third = DispatchSemaphore(value: 0)
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 5, minWorkers: 1, shardEndpoints: endpoints,
                                               shardLink: { LateLink($1, delay: 0.3) },
                                               onStep: { step in if step == 2 { third.signal() } })
        var workers = try (0..<2).map { _ in try startWorker(coordinator.endpoint) }
        XCTAssertEqual(third.wait(timeout: .now() + 40), .success, coordinator.logs.text)
        workers.append(try startWorker(coordinator.endpoint))
        let result = try XCTUnwrap(coordinator.wait(timeout: 60))
        XCTAssertEqual(try result.get().steps, 8, coordinator.logs.text)
        XCTAssertNotNil(coordinator.logs.line(containing: ["joins the running job", "(3 worker(s))"]), coordinator.logs.text)
        XCTAssertEqual(try ClusterFixtures.outcome(of: session, checkpoint: directory).values, reference.values)
        for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get(), worker.logs.text) }
        for shard in shards { XCTAssertEqual(shard.waitForExit(timeout: 10), 0, shard.transcript) }
    }

    /// Two `recur shard` processes on free loopback ports, the in-process reference of `config`
    /// and a session to run it against them.
    private func twoShardRun(_ config: TrainingConfig) throws
        -> (reference: ClusterFixtures.Outcome, endpoints: [String], shards: [RecurProcess], directory: URL, session: TrainingSession) {
        let reference = try ClusterFixtures.localReference(config: config, directory: try temporaryDirectory())
        let endpoints = try (0..<2).map { _ in try freeLoopbackEndpoint() }
        let shards = try endpoints.map { try launch(["shard", "--bind", $0, "--heartbeat-timeout", "5"]) }
        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        return (reference, endpoints, shards, directory, session)
    }

    /// "[worker pid 123] shard 1 of 2: …" → 123 (local processes' log prefix).
    static func pid(inPrefixOf line: String) -> pid_t? {
        guard let range = line.range(of: "pid ") else { return nil }
        return pid_t(line[range.upperBound...].prefix { $0.isNumber })
    }
}

/// A client link that hands on each message `delay` seconds after it arrived (in order), as a
/// loaded machine or a slow path would.
final class LateLink: ClientTransport {
    private let inner: ClientTransport
    private let delay: Double
    private var queue: [(due: Double, from: PeerIdentity, bytes: [UInt8])] = []
    /// The body handed out last: valid until the next `receive`, as the protocol says.
    private var current = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init(_ inner: ClientTransport, delay: Double) {
        self.inner = inner
        self.delay = delay
    }

    deinit { current.deallocate() }

    func receive(timeout: Double) throws -> Received? {
        let deadline = Date().timeIntervalSince1970 + timeout
        while true {
            while let received = try inner.receive(timeout: 0) {
                guard case .message(let from, let body) = received else { return received }
                queue.append((Date().timeIntervalSince1970 + delay, from, Array(body)))
            }
            let now = Date().timeIntervalSince1970
            if let first = queue.first, first.due <= now {
                queue.removeFirst()
                current.deallocate()
                current = .allocate(byteCount: first.bytes.count, alignment: 16)
                first.bytes.withUnsafeBytes { current.copyMemory(from: $0) }
                return .message(from: first.from, body: UnsafeRawBufferPointer(current))
            }
            if now >= deadline { return nil }
            usleep(1000)
        }
    }

    func send(_ body: UnsafeRawBufferPointer) throws { try inner.send(body) }
    func close() { inner.close() }
    func discard() { inner.discard() }
}
