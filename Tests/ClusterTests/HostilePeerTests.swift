import Foundation
import XCTest
import Cluster
import Recurrent
import Training
import Wire

/// A peer that sends junk as fast as it can must not delay the detection of a dead worker or a
/// stop request, nor get a poisoned gradient or state into the run (in-memory transport: the
/// coordinator's logic, no sockets).
final class HostilePeerTests: XCTestCase {
    /// Injects junk from an outsider until told to stop (bounded: at most `limit` messages).
    private final class Flood: @unchecked Sendable {
        private let lock = NSLock()
        private var running = true
        private(set) var sent = 0
        private let done = DispatchSemaphore(value: 0)

        init(_ network: InMemoryNetwork, limit: Int = 2_000_000) {
            let junk: [[UInt8]] = [[0xFF, 0xFF, 0xFF], [], [0x08, 0x02], Array(repeating: 0x41, count: 4096)]
            Thread { [self] in
                var count = 0
                while count < limit, isRunning {
                    network.inject(junk[count % junk.count], from: Array("flood".utf8))
                    count += 1
                    if count % 64 == 0 { usleep(50) }   // let the queue drain: a flood, not a memory test
                }
                lock.lock(); sent = count; lock.unlock()
                done.signal()
            }.start()
        }

        private var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

        func stop() -> Int {
            lock.lock(); running = false; lock.unlock()
            done.wait()
            return sent
        }
    }

    private func coordinatorRun(network: InMemoryNetwork, steps: Int, heartbeatTimeout: Double, stop: StopRequest,
                                logs: LogLines) throws -> BackgroundRun<Summary> {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(steps: steps), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options())
        var options = CoordinatorOptions(workers: 1)
        options.heartbeatTimeout = heartbeatTimeout
        let coordinator = try Coordinator(plan: session.plan, corpus: session.corpus, options: options,
                                          transport: network.server(), stop: stop, update: session.update, log: logs.append)
        let loop = TrainingLoop(session: session, source: coordinator, store: coordinator.store, stop: stop) { _ in }
        return BackgroundRun(name: "coordinator under flood") { try loop.run() }
    }

    func testJunkDoesNotDelayDetectingADeadWorker() throws {
        let network = InMemoryNetwork(), logs = LogLines(), timeout = 1.0
        let run = try coordinatorRun(network: network, steps: 5, heartbeatTimeout: timeout, stop: StopRequest(), logs: logs)
        let peer = FakeWorker(network: network, identity: "quiet", pid: 99)
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        _ = try peer.awaitWeights()          // …and never answers
        let flood = Flood(network)
        let start = Date()
        let result = try XCTUnwrap(run.wait(timeout: timeout + 5), "a flood stalled the coordinator")
        let elapsed = Date().timeIntervalSince(start)
        let sent = flood.stop()
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertTrue("\(error)".contains("stopped answering"), "\(error)")
        }
        XCTAssertLessThan(elapsed, timeout + 1, "dead worker detected \(elapsed) s after the flood began")
        XCTAssertGreaterThan(sent, 1000, "the flood was not a flood")
        XCTAssertLessThan(logs.lines.filter { $0.contains("rejected message") }.count, 200, "rejections are not rate-limited")
        XCTAssertNotNil(logs.line(containing: ["more message(s)"]), "suppressed rejections are not counted:\n\(logs.text.suffix(2000))")
    }

    func testJunkDoesNotDelayAStopRequest() throws {
        let network = InMemoryNetwork(), logs = LogLines(), stop = StopRequest()
        let run = try coordinatorRun(network: network, steps: 5, heartbeatTimeout: 30, stop: stop, logs: logs)
        let peer = FakeWorker(network: network, identity: "slow", pid: 98)
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        _ = try peer.awaitWeights()
        let flood = Flood(network)
        usleep(200_000)
        let start = Date()
        stop.request("interrupted by SIGTERM", exitCode: 143)
        let result = try XCTUnwrap(run.wait(timeout: 5), "a flood stalled the stop")
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
        _ = flood.stop()
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertEqual((error as? StopRequest.Stopped)?.exitCode, 143)
        }
    }

    /// Finite-gradient pushes with NaN carried state, or NaN in the gradient, are refused; the
    /// run goes on with the honest pushes and ends equal to the reference.
    func testPoisonedStateOrGradientIsRefused() throws {
        let config = ClusterFixtures.tinyConfig(steps: 2)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("recur-poison-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let reference = try ClusterFixtures.localReference(config: config, directory: scratch.appendingPathComponent("ref"))
        let network = InMemoryNetwork(), logs = LogLines()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus, options: ClusterFixtures.options())
        let coordinator = try Coordinator(plan: session.plan, corpus: session.corpus, options: CoordinatorOptions(workers: 1),
                                          transport: network.server(), stop: StopRequest(), update: session.update, log: logs.append)
        let loop = TrainingLoop(session: session, source: coordinator, store: coordinator.store) { _ in }
        let run = BackgroundRun(name: "coordinator") { try loop.run() }
        let peer = FakeWorker(network: network, identity: "poisoner", pid: 97)
        try peer.sayHello()
        _ = try peer.awaitWelcome()
        for _ in 0..<2 {
            let honest = try peer.honestPush(for: try peer.awaitWeights())
            var badState = honest
            badState.state[0].values[0] = .nan
            var badGradient = honest
            badGradient.tensors[1].values[0] = .infinity
            try peer.send(.gradientPush(badState))
            try peer.send(.gradientPush(badGradient))
            try peer.send(.gradientPush(honest))
        }
        XCTAssertEqual(try XCTUnwrap(run.wait(timeout: 20)).get().steps, 2)
        XCTAssertNotNil(logs.line(containing: ["state tensor h holds values that are not finite"]), logs.text)
        XCTAssertNotNil(logs.line(containing: ["gradient tensor \(session.layout.slices[1].name) holds values that are not finite"]), logs.text)
        XCTAssertEqual(session.update.values.map(\.bitPattern), reference.values.map(\.bitPattern))
    }
}
