import Foundation
import XCTest
import Cluster
import Training
import Wire

/// A real `recur serve` fed junk over loopback by several peers: its memory stays flat and it
/// still stops promptly on SIGTERM.
final class ServeUnderLoadTests: ClusterTestCase {
    private func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    func testMemoryStaysFlatUnderTenThousandJunkMessagesAndSIGTERMIsServed() throws {
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--steps", "10", "--hidden", "64",
                                "--layers", "2", "--batch", "8", "--seq", "8", "--checkpoint-dir", "",
                                "--join-timeout", "120", "--heartbeat-timeout", "2"])
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["waiting for 1 worker(s)"], timeout: 20), serve.transcript)
        // Junk just under the coordinator's message limit (bigger would be dropped by libzmq
        // before it is buffered), from four peers, as fast as they can send.
        let peers = try (0..<4).map { try FakeWorker(endpoint: endpoint, identity: "hostile-\($0)") }
        let junk = [UInt8](repeating: 0xAB, count: 60_000)
        func flood(_ count: Int) throws {
            for i in 0..<count { try peers[i % peers.count].send(bytes: junk) }
        }
        try flood(1_000)
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["rejected message from peer"], timeout: 10), serve.transcript)
        let before = try XCTUnwrap(residentKiB(serve.pid))
        try flood(10_000)
        usleep(500_000)
        let after = try XCTUnwrap(residentKiB(serve.pid))
        XCTAssertLessThanOrEqual(Double(after), Double(before) * 1.10 + 2048,
                                 "resident memory grew from \(before) KiB to \(after) KiB under junk")
        let rejectedLines = serve.stdout.lines.filter { $0.contains("rejected message") }.count
        XCTAssertLessThan(rejectedLines, 500, "11,000 junk messages gave \(rejectedLines) log lines")

        let start = Date()
        serve.send(SIGTERM)
        try flood(2_000)
        let status = serve.waitForExit(timeout: 5)
        XCTAssertEqual(status, 143, serve.transcript.suffix(3000).description)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
    }
}

/// Without CurveZMQ a job admits only workers that bring its join token.
final class JoinTokenTests: ClusterTestCase {
    func testServeRefusesAWorkerWithoutTheTokenAndAdmitsOneWithIt() throws {
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--steps", "3", "--hidden", "8",
                                "--layers", "1", "--batch", "4", "--seq", "8", "--checkpoint-dir", "", "--heartbeat-timeout", "3"])
        let stranger = try FakeWorker(endpoint: endpoint, identity: "stranger")
        try stranger.sayHello()   // the corpus is public; the token is not
        guard case .error(let refusal)? = try stranger.next(timeout: 10) else { return XCTFail(serve.transcript) }
        XCTAssertTrue(refusal.message.contains("missing join token"), refusal.message)
        var guess = stranger.hello()
        guess.joinToken = "guess"
        try stranger.send(.hello(guess))
        guard case .error(let wrong)? = try stranger.next(timeout: 10) else { return XCTFail(serve.transcript) }
        XCTAssertTrue(wrong.message.contains("wrong join token"), wrong.message)
        XCTAssertFalse(serve.stdout.text.contains(Self.joinToken), "a token from the environment is not printed")

        let worker = try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "3"])
        XCTAssertEqual(serve.waitForExit(timeout: 30), 0, serve.transcript)
        XCTAssertEqual(worker.waitForExit(timeout: 10), 0, worker.transcript)
    }

    func testServeMakesATokenFileAndAWorkerReadsIt() throws {
        unsetenv("RECUR_JOIN_TOKEN")
        let directory = try temporaryDirectory()
        let tokenFile = directory.appendingPathComponent("join-token").path
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--steps", "3", "--hidden", "8",
                                "--layers", "1", "--batch", "4", "--seq", "8", "--checkpoint-dir", "",
                                "--token-file", tokenFile, "--heartbeat-timeout", "3"])
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["join token", tokenFile], timeout: 10), serve.transcript)
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let worker = try launch(["work", "--connect", endpoint, "--threads", "1", "--token-file", tokenFile,
                                 "--heartbeat-timeout", "3"])
        XCTAssertEqual(serve.waitForExit(timeout: 30), 0, serve.transcript)
        XCTAssertEqual(worker.waitForExit(timeout: 10), 0, worker.transcript)

        chmod(tokenFile, 0o644)
        let careless = try launch(["work", "--connect", endpoint, "--token-file", tokenFile])
        XCTAssertEqual(careless.waitForExit(timeout: 10), 64, careless.transcript)
        XCTAssertNotNil(careless.stderr.line(containing: ["chmod 600 \(tokenFile)"]), careless.transcript)
    }

    /// Issue 21 item 1: a peer without the token that never reads its replies used to fill
    /// its queue, and every refusal after that blocked the coordinator's loop for the send
    /// timeout (the heartbeat timeout): training froze and the healthy worker was declared
    /// dead. Replies to non-members are now dropped when the queue is full.
    func testAPeerThatNeverReadsItsRefusalsCannotFreezeTheRun() throws {
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--steps", "60", "--hidden", "32",
                                "--layers", "1", "--batch", "8", "--seq", "8", "--checkpoint-dir", "",
                                "--heartbeat-timeout", "30", "--print-every", "20"])
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["waiting for 1 worker(s)"], timeout: 20), serve.transcript)
        let mute = try FakeWorker(endpoint: endpoint, identity: "never-reads")
        var wrong = mute.hello()
        wrong.joinToken = "not-the-token"
        for _ in 0..<100_000 { try mute.send(.hello(wrong)) }   // each refused with an Error it never reads: its queues fill
        let worker = try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "30"])
        let start = Date()
        XCTAssertEqual(serve.waitForExit(timeout: 60), 0, serve.transcript.suffix(3000).description)
        XCTAssertEqual(worker.waitForExit(timeout: 10), 0, worker.transcript)
        XCTAssertLessThan(Date().timeIntervalSince(start), 25, "the run waited on the peer that never reads")
        let refusals = serve.stdout.lines.filter { $0.contains("wrong join token") }.count
        XCTAssertLessThan(refusals, 60, "100,000 refusals of one peer gave \(refusals) log lines")
    }
}
