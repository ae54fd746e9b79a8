import Foundation
import XCTest
import Cluster
import Recurrent
import Training
import Wire

/// The coordinator and worker logic over `InMemoryNetwork`: no sockets, no processes, no
/// ports. Joins, refusals, push parts, stale and duplicate pushes and a dead worker, each
/// checked against the in-process reference or a named error.
final class InMemoryCoordinatorTests: XCTestCase {
    private var directories: [URL] = []

    override func tearDown() {
        for url in directories { try? FileManager.default.removeItem(at: url) }
        super.tearDown()
    }

    private func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("recur-inmemory-\(UUID().uuidString)")
        directories.append(url)
        return url
    }

    /// A loop with a coordinator on `network`, running on a background thread.
    private final class Run: @unchecked Sendable {
        let session: TrainingSession
        let coordinator: Coordinator
        let loop: TrainingLoop
        let logs = LogLines()
        private var background: BackgroundRun<Summary>?

        init(config: TrainingConfig, workers: Int, network: InMemoryNetwork, checkpoint: URL?, heartbeatTimeout: Double = 5,
             minWorkers: Int? = nil, balance: Bool = true) throws {
            session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: checkpoint))
            var options = CoordinatorOptions(workers: workers)
            options.heartbeatTimeout = heartbeatTimeout
            options.joinTimeout = 10
            options.minWorkers = minWorkers
            options.balance = balance
            let stop = StopRequest()
            coordinator = try Coordinator(plan: session.plan, corpus: session.corpus, options: options,
                                          transport: network.server(), stop: stop, update: session.update, log: logs.append)
            loop = TrainingLoop(session: session, source: coordinator, store: coordinator.store, stop: stop) { _ in }
            let loop = self.loop
            background = BackgroundRun(name: "in-memory coordinator") { try loop.run() }
        }

        func result(timeout: Double = 30) throws -> Result<Summary, Error> {
            try XCTUnwrap(background!.wait(timeout: timeout), "coordinator still running; log:\n\(logs.text)")
        }
    }

    private func startWorker(_ network: InMemoryNetwork, identity: String, threads: Int = 1) -> BackgroundRun<Void> {
        var options = WorkerOptions(endpoint: "inmemory://coordinator", threads: threads)
        options.heartbeatTimeout = 5
        let worker = Worker(corpus: ClusterFixtures.corpus, options: options,
                            transport: network.client(identity: Array(identity.utf8)), log: { _ in })
        return BackgroundRun(name: identity) { try worker.run() }
    }

    func testTwoWorkersGiveTheInProcessWeightsBitForBit() throws {
        let config = ClusterFixtures.tinyConfig(steps: 10)
        let reference = try ClusterFixtures.localReference(config: config, directory: try scratch())
        let network = InMemoryNetwork()
        let directory = try scratch()
        let run = try Run(config: config, workers: 2, network: network, checkpoint: directory)
        let workers = [startWorker(network, identity: "a", threads: 2), startWorker(network, identity: "b")]
        XCTAssertEqual(try run.result().get().steps, 10)
        for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get()) }
        let outcome = try ClusterFixtures.outcome(of: run.session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern))
        XCTAssertEqual(outcome.hiddenH.map(\.bitPattern), reference.hiddenH.map(\.bitPattern))
        XCTAssertEqual(outcome.hiddenC.map(\.bitPattern), reference.hiddenC.map(\.bitPattern))
    }

    /// Any worker count from 1 to the chunk count gives the in-process bytes: a worker whose
    /// chunks are not one node of the reduction tree sends one sum per node it covers, and the
    /// coordinator finishes the fixed tree (W = 3, 5, 6, 7 split 8 chunks off the tree).
    func testEveryWorkerCountFromOneToTheChunkCountGivesTheInProcessBytes() throws {
        var config = ClusterFixtures.tinyConfig(steps: 9)
        config.chunkStreams = 1   // 8 chunks of one stream
        let reference = try ClusterFixtures.localReference(config: config, threads: 2, directory: try scratch())
        for count in 1...8 {
            let network = InMemoryNetwork()
            let directory = try scratch()
            let run = try Run(config: config, workers: count, network: network, checkpoint: directory)
            let workers = (0..<count).map { startWorker(network, identity: "w\($0)", threads: 1 + $0 % 2) }
            XCTAssertEqual(try run.result().get().steps, 9, "W = \(count)")
            for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get()) }
            let outcome = try ClusterFixtures.outcome(of: run.session, checkpoint: directory)
            XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern), "W = \(count): weights")
            XCTAssertEqual(outcome.hiddenH.map(\.bitPattern), reference.hiddenH.map(\.bitPattern), "W = \(count): h")
            XCTAssertEqual(outcome.hiddenC.map(\.bitPattern), reference.hiddenC.map(\.bitPattern), "W = \(count): c")
        }
    }

    /// In an elastic job (`minWorkers` set) a worker that says hello mid-run joins at the next
    /// step boundary and takes its share of the chunks; the bytes stay those of one process.
    func testAWorkerJoiningARunningJobTakesItsShareAndTheBytesStay() throws {
        var config = ClusterFixtures.tinyConfig(steps: 400)   // long enough for the late hello to land mid-run
        config.chunkStreams = 1
        let reference = try ClusterFixtures.localReference(config: config, directory: try scratch())
        let network = InMemoryNetwork()
        let directory = try scratch()
        let run = try Run(config: config, workers: 2, network: network, checkpoint: directory, minWorkers: 1)
        var workers = [startWorker(network, identity: "first"), startWorker(network, identity: "second")]
        XCTAssertNotNil(run.logs.waitForLine(containing: ["joined", "(2/2)"], timeout: 10), run.logs.text)
        workers.append(startWorker(network, identity: "late"))
        XCTAssertEqual(try run.result().get().steps, 400)
        for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get()) }
        XCTAssertNotNil(run.logs.line(containing: ["joins the running job at step", "(3 worker(s))"]), run.logs.text)
        let outcome = try ClusterFixtures.outcome(of: run.session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern))
    }

    func testARefusedFingerprintIsAnsweredAndTheJobKeepsWaiting() throws {
        let network = InMemoryNetwork()
        let run = try Run(config: ClusterFixtures.tinyConfig(steps: 3), workers: 1, network: network, checkpoint: nil)
        let impostor = FakeWorker(network: network, identity: "impostor")
        var hello = impostor.hello()
        hello.corpusDigest = String(repeating: "0", count: 64)
        try impostor.send(.hello(hello))
        guard case .error(let refusal)? = try impostor.next(timeout: 5) else { return XCTFail("no refusal") }
        XCTAssertTrue(refusal.message.contains("corpus_digest 000000000000"), refusal.message)
        let worker = startWorker(network, identity: "real")
        XCTAssertEqual(try run.result().get().steps, 3)
        XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get())
        XCTAssertNil(run.logs.line(containing: ["fakehost", "joined"]), run.logs.text)
    }

    /// A scripted worker sends stale, future, duplicate and bad-part pushes around honest
    /// ones; each is rejected with its reason and the run still equals the reference.
    func testStaleDuplicateAndBadPartPushesAreRejectedAndTheRunStaysExact() throws {
        let config = ClusterFixtures.tinyConfig(steps: 3)
        let reference = try ClusterFixtures.localReference(config: config, directory: try scratch())
        let network = InMemoryNetwork()
        let directory = try scratch()
        let run = try Run(config: config, workers: 1, network: network, checkpoint: directory)
        let peer = FakeWorker(network: network, identity: "scripted")
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        for step in 0..<3 {
            let weights = try peer.awaitWeights()
            XCTAssertEqual(weights.step, UInt64(step))
            let honest = try peer.honestPush(for: weights)
            var stale = honest
            stale.step = UInt64(step) &- 1
            var future = honest
            future.step = .max   // 2^64 − 1: must be refused, not overflow
            var badPart = honest
            badPart.part = 3
            badPart.parts = 2
            for bad in [stale, future, badPart] where step > 0 || bad.step != .max { try peer.send(.gradientPush(bad)) }
            try peer.send(.gradientPush(honest))
            // A copy after the push completed: queued in order, so it is read while step 3 is
            // gathered, as stale.
            if step == 1 { try peer.send(.gradientPush(honest)) }
        }
        XCTAssertEqual(try run.result().get().steps, 3)
        for reason in ["stale gradient for step 1, expected step 2", "gradient for future step 2^64, expected step 2",
                       "gradient part 3 of 2", "stale gradient for step 2, expected step 3"] {
            XCTAssertNotNil(run.logs.line(containing: [reason]), "\(reason) not logged:\n\(run.logs.text)")
        }
        let outcome = try ClusterFixtures.outcome(of: run.session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern))
    }

    /// A worker whose connection closes mid-run ends the run with an error naming it and a
    /// checkpoint of the last completed step.
    func testADeadWorkerIsNamedAndTheLastCompletedStepIsCheckpointed() throws {
        let network = InMemoryNetwork()
        let directory = try scratch()
        let run = try Run(config: ClusterFixtures.tinyConfig(steps: 10), workers: 1, network: network, checkpoint: directory)
        let peer = FakeWorker(network: network, identity: "mortal", pid: 777)
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        for _ in 0..<2 { try peer.send(.gradientPush(try peer.honestPush(for: try peer.awaitWeights()))) }
        peer.transport!.close()
        XCTAssertThrowsError(try run.result().get()) { error in
            XCTAssertEqual(error as? ClusterError, .workerFailed("\(peer.name(rank: 0)) is gone (connection closed) at step 3"))
        }
        XCTAssertEqual(try Checkpoint.read(from: directory).training?.step, 2)
    }

    /// A silent worker (alive, never pushing) is declared dead after the heartbeat timeout.
    func testASilentWorkerIsDeclaredDeadAfterTheHeartbeatTimeout() throws {
        let network = InMemoryNetwork()
        let run = try Run(config: ClusterFixtures.tinyConfig(steps: 5), workers: 1, network: network, checkpoint: nil,
                          heartbeatTimeout: 0.5)
        let peer = FakeWorker(network: network, identity: "silent", pid: 778)
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        XCTAssertThrowsError(try run.result(timeout: 10).get()) { error in
            guard case ClusterError.workerFailed(let text)? = error as? ClusterError else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains(peer.name(rank: 0)) && text.contains("stopped answering at step 1"), text)
        }
    }

    /// A welcome that starts past the run's end, or weights for step 2^64 − 1, are refused by
    /// the worker without overflowing.
    func testAWorkerRefusesAWelcomePastTheRunAndWeightsOfAnyStep() throws {
        let network = InMemoryNetwork()
        let server = network.server()
        let worker = startWorker(network, identity: "w")
        guard case .message(let from, _)? = try server.receive(timeout: 5) else { return XCTFail("no hello") }
        var config = ClusterFixtures.tinyConfig(steps: 3)
        config.steps = 3
        let welcome = Welcome(rank: 0, workerCount: 1, runConfig: config.canonicalJSON(), streamBegin: 0, streamEnd: 8,
                              step: .max)
        try WireCodec.encode(.welcome(welcome)).withUnsafeBytes { try server.send($0, to: from) }
        XCTAssertThrowsError(try XCTUnwrap(worker.wait(timeout: 10)).get()) { error in
            guard case ClusterError.protocolViolation(let text)? = error as? ClusterError else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("2^64"), text)
        }
    }

    /// A slow worker (heartbeats arrive, its push is late by more than the heartbeat timeout)
    /// is named as slow, not dead, and the worker that already pushed keeps hearing from the
    /// coordinator: the run completes.
    func testASlowWorkerIsToldFromADeadOneAndDoesNotGetAHealthyOneKilled() throws {
        let network = InMemoryNetwork()
        // --balance off: the step waits for the slow worker (with it on, its chunks would be
        // computed by the idle one).
        let run = try Run(config: ClusterFixtures.tinyConfig(steps: 2), workers: 2, network: network, checkpoint: nil,
                          heartbeatTimeout: 1, balance: false)
        var options = WorkerOptions(endpoint: "inmemory://coordinator", threads: 1)
        options.heartbeatTimeout = 1
        let fastLogs = LogLines()
        let fast = Worker(corpus: ClusterFixtures.corpus, options: options,
                          transport: network.client(identity: Array("fast".utf8)), log: fastLogs.append)
        let fastRun = BackgroundRun(name: "fast") { try fast.run() }
        let slow = FakeWorker(network: network, identity: "slow", pid: 555)
        try slow.sayHello()
        _ = try slow.awaitWelcome()
        for _ in 0..<2 {
            let push = try slow.honestPush(for: try slow.awaitWeights())
            for _ in 0..<12 {   // 2.4 s of "computing", alive
                try slow.send(.heartbeat(Heartbeat(rank: 1, step: push.step)))
                usleep(200_000)
            }
            try slow.send(.gradientPush(push))
        }
        XCTAssertEqual(try run.result().get().steps, 2)
        XCTAssertNoThrow(try XCTUnwrap(fastRun.wait(timeout: 10)).get(), fastLogs.text)
        XCTAssertNotNil(run.logs.line(containing: ["pid 555) is slow: no gradient for step 1", "heartbeats arrive"]), run.logs.text)
    }

    /// Issue 21 item 10: a worker that heartbeats but never pushes (a hung compute thread) used
    /// to hold the run forever with one "is slow" line. Past the stall bound (4 heartbeat
    /// timeouts here) it is lost like a dead one: with --min-workers 1 its chunks move to the
    /// other worker and the run ends with the in-process bytes.
    func testAWorkerThatHeartbeatsButNeverPushesLosesItsChunks() throws {
        try heartbeatsButNoPushes(balance: false)
    }

    /// The same with --balance on: the honest worker computes the hung one's chunks (re-issue)
    /// from the first step, and the hung one, behind and never catching up, is dropped past the
    /// same bound. (The honest worker waits 10 ms per chunk so that the run outlasts the bound.)
    func testWithBalanceAWorkerThatNeverPushesHasItsChunksReissuedAndIsDroppedPastTheBound() throws {
        try heartbeatsButNoPushes(balance: true)
    }

    private func heartbeatsButNoPushes(balance: Bool) throws {
        let config = ClusterFixtures.tinyConfig(steps: balance ? 120 : 4)
        let reference = try ClusterFixtures.localReference(config: config, directory: try scratch())
        let network = InMemoryNetwork(), directory = try scratch()
        let run = try Run(config: config, workers: 2, network: network, checkpoint: directory, heartbeatTimeout: 0.5, minWorkers: 1,
                          balance: balance)
        var options = WorkerOptions(endpoint: "inmemory://coordinator", threads: 1)
        options.heartbeatTimeout = 5
        if balance { options.chunkDelay = ChunkDelay(milliseconds: 10) }
        let honest = Worker(corpus: ClusterFixtures.corpus, options: options,
                            transport: network.client(identity: Array("honest".utf8)), log: { _ in })
        let honestRun = BackgroundRun(name: "honest") { try honest.run() }
        let hung = FakeWorker(network: network, identity: "hung", pid: 777)
        try hung.sayHello()
        _ = try hung.awaitWelcome()
        let start = Date()
        let heartbeats = BackgroundRun(name: "hung heartbeats") { () -> Void in
            while Date().timeIntervalSince(start) < 20 {   // alive, never pushing
                try? hung.send(.heartbeat(Heartbeat(rank: 1, step: 0)))
                usleep(100_000)
            }
        }
        XCTAssertEqual(try run.result(timeout: 20).get().steps, config.steps, run.logs.text)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15, "the hung worker held the run")
        XCTAssertNotNil(run.logs.line(containing: ["pid 777) made no progress on step 1", "heartbeats arrive"]), run.logs.text)
        if balance { XCTAssertNotNil(run.logs.line(containing: ["re-issued chunks", "pid 777)"]), run.logs.text) }
        XCTAssertNoThrow(try XCTUnwrap(honestRun.wait(timeout: 10)).get())
        let outcome = try ClusterFixtures.outcome(of: run.session, checkpoint: directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), reference.values.map(\.bitPattern))
        _ = heartbeats
    }
}
