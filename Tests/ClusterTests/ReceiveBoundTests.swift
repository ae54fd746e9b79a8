import Foundation
import XCTest
import Cluster

/// Issue 21 items 3 and 8 against real processes: peers flood a bare `recur shard` and a
/// `recur serve` with junk, and each process's peak resident memory (VmHWM) must stay under
/// the bound written here. Every flood is bounded in messages and seconds and goes to
/// loopback only. (Only APIs older than the fix are used, so the tests also run against an
/// older `recur` and show what they catch.)
final class ReceiveBoundTests: ClusterTestCase {
    /// Peers that send one junk body, shared without a copy, as fast as their connection takes
    /// it, round robin on the calling thread: a peer whose connection is not (yet) admitted
    /// just fails to send and tries again later.
    private final class JunkFlood {
        private let context: ZMQContext
        private var sockets: [ZMQSocket] = []
        private let junk: ZMQSharedBuffer

        init(endpoints: [String], peersEach: Int, bytes: Int) throws {
            context = try ZMQContext()
            junk = ZMQSharedBuffer(count: bytes)
            junk.mutableBytes.initializeMemory(as: UInt8.self, repeating: 0xA7)
            try connect(endpoints, peersEach: peersEach)
        }

        /// `spacing` seconds between one peer's connection and the next (0: all at once).
        func connect(_ endpoints: [String], peersEach: Int, spacing: Double = 0) throws {
            for _ in 0..<peersEach {
                for endpoint in endpoints {
                    let socket = try ZMQSocket(context: context, kind: .dealer)
                    try socket.setHighWaterMarks(send: 1, receive: 1)   // the test holds little
                    socket.sendTimeout = .zero
                    try socket.connect(endpoint)
                    sockets.append(socket)
                }
                if spacing > 0 { usleep(UInt32(spacing * 1_000_000)) }
            }
        }

        /// Until every peer has sent `messagesEach` or `seconds` have passed; the messages sent.
        func run(messagesEach: Int, seconds: Double) -> Int {
            var sent = [Int](repeating: 0, count: sockets.count)
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline, sent.contains(where: { $0 < messagesEach }) {
                var progress = false
                for (i, socket) in sockets.enumerated() where sent[i] < messagesEach {
                    guard let message = try? ZMQMessage(sharing: junk), (try? socket.send(message)) != nil else { continue }
                    sent[i] += 1
                    progress = true
                }
                if !progress { usleep(5_000) }
            }
            return sent.reduce(0, +)
        }

        func close() {
            for socket in sockets { socket.close() }
            sockets = []
        }
    }

    private func peakResidentMB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return nil }
        return kib >> 10
    }

    /// Issue 21 item 3: a bare `recur shard` bound 1 GiB messages, so 12 peers sending junk
    /// grew it from 27 MB to 5.5 GB. It now takes at most --max-message-bytes (default 16 MiB)
    /// before any setup: libzmq drops the 20 MB junk at its header, before allocating it.
    /// Bound: 100 MB (an idle shard is about 30 MB; the old shard holds at least one 20 MB
    /// message per peer in its decoders, 12 × 20 MB: it peaked at 274 MB here).
    func testItem3_ABareShardDropsMessagesLargerThanItsStartupBoundUnreadAndStaysUnder100MB() throws {
        let endpoint = try freeLoopbackEndpoint()
        let shard = try launch(["shard", "--bind", endpoint, "--heartbeat-timeout", "30"])
        XCTAssertNotNil(shard.stdout.waitForLine(containing: ["waiting for the coordinator"], timeout: 20), shard.transcript)
        let flood = try JunkFlood(endpoints: [endpoint], peersEach: 12, bytes: 20_000_000)
        let sent = flood.run(messagesEach: 10, seconds: 15)
        usleep(500_000)
        let peak = try XCTUnwrap(peakResidentMB(shard.pid))
        print("12 peers sent \(sent) messages of 20 MB; the bare shard peaked at \(peak) MB")
        flood.close()
        XCTAssertTrue(shard.isRunning, shard.transcript.suffix(2000).description)
        XCTAssertLessThanOrEqual(peak, 100, "a bare shard peaked at \(peak) MB under 20 MB junk")
        shard.send(SIGTERM)
        XCTAssertNotNil(shard.waitForExit(timeout: 10), shard.transcript.suffix(2000).description)
    }

    /// Issue 21 item 8: the coordinator's memory was bounded per peer, not in total (128 peers
    /// sending 1.4 MB junk took it to 2.63 GB). Now each server socket admits at most its run's
    /// members + 4 connections, each queueing at most 4 messages (+1 in libzmq's decoder):
    /// here 1 worker + 4 = 5 connections × 5 × 3 MB = 75 MB of junk at most for the coordinator
    /// (LSTM 2×256: a message limit of about 3.7 MB, junk of 3 MB just under it), and for the
    /// bare shard (the coordinator + 4). Bound on peak RSS: 200 MB each (an idle coordinator of
    /// this model is about 45 MB, a shard 30 MB; before the cap both reached 410 MB here). Then
    /// the peers leave and a real worker still joins and the run finishes.
    func testItem8_ACoordinatorAndAShardFloodedBy128PeersEachStayUnder200MBAndAWorkerJoinsAfter() throws {
        let endpoint = try freeLoopbackEndpoint(), shardEndpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--steps", "3", "--cell", "lstm",
                                "--hidden", "256", "--layers", "2", "--batch", "8", "--seq", "8", "--checkpoint-dir", "",
                                "--sample-length", "0", "--join-timeout", "120", "--heartbeat-timeout", "10"])
        let shard = try launch(["shard", "--bind", shardEndpoint, "--heartbeat-timeout", "30"])
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["waiting for 1 worker(s)"], timeout: 30), serve.transcript)
        XCTAssertNotNil(shard.stdout.waitForLine(containing: ["waiting for the coordinator"], timeout: 20), shard.transcript)

        // Four peers one at a time, so that they are admitted (a crowd trying at once is refused
        // as a whole) and their junk is read; then 124 more at once.
        let flood = try JunkFlood(endpoints: [], peersEach: 0, bytes: 3_000_000)
        try flood.connect([endpoint, shardEndpoint], peersEach: 4, spacing: 0.3)
        try flood.connect([endpoint, shardEndpoint], peersEach: 124)
        let sent = flood.run(messagesEach: 10, seconds: 20)
        usleep(500_000)
        let peaks = try [serve, shard].map { try XCTUnwrap(peakResidentMB($0.pid)) }
        print("256 peers sent \(sent) messages of 3 MB; peak resident memory: coordinator \(peaks[0]) MB, shard \(peaks[1]) MB")
        XCTAssertTrue(serve.isRunning && shard.isRunning, String(serve.transcript.suffix(2000)) + String(shard.transcript.suffix(2000)))
        XCTAssertLessThanOrEqual(peaks[0], 200, "the coordinator peaked at \(peaks[0]) MB under 128 junk peers")
        XCTAssertLessThanOrEqual(peaks[1], 200, "the shard peaked at \(peaks[1]) MB under 128 junk peers")
        XCTAssertNotNil(serve.stdout.line(containing: ["rejected message from peer"]), "junk reached the coordinator")
        XCTAssertNotNil(shard.stdout.line(containing: ["rejected message from peer"]), "junk reached the shard")

        flood.close()
        let worker = try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "10"])
        XCTAssertEqual(serve.waitForExit(timeout: 90), 0, serve.transcript.suffix(4000).description)
        XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript.suffix(2000).description)
        let refusals = serve.stdout.lines.filter { $0.contains("rejected") }.count
        XCTAssertLessThan(refusals, 200, "the flood gave \(refusals) log lines")
        shard.send(SIGTERM)
        XCTAssertNotNil(shard.waitForExit(timeout: 10), shard.transcript.suffix(2000).description)
    }

    /// Issue 21 item 3, the other side: a setup larger than the bound a shard was started with
    /// never reaches it (libzmq drops it unread), so the coordinator says what to do in one
    /// line and exits non-zero; the shard keeps waiting for a setup (no crash).
    func testItem3_ASetupLargerThanAShardsStartupBoundEndsTheCoordinatorWithOneLineNamingTheSize() throws {
        let endpoint = try freeLoopbackEndpoint()
        let shardEndpoints = try (0..<2).map { _ in try freeLoopbackEndpoint() }
        let shards = try shardEndpoints.map {
            try launch(["shard", "--bind", $0, "--heartbeat-timeout", "30", "--max-message-bytes", "1024"])
        }
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "1", "--shards", "2",
                                "--shard-endpoints", shardEndpoints.joined(separator: ","), "--steps", "3",
                                "--hidden", "32", "--layers", "2", "--batch", "8", "--seq", "8", "--checkpoint-dir", "",
                                "--sample-length", "0", "--heartbeat-timeout", "3", "--join-timeout", "60"])
        let worker = try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "3"])
        let status = serve.waitForExit(timeout: 60)
        XCTAssertNotNil(status, serve.transcript.suffix(3000).description)
        XCTAssertNotEqual(status, 0, serve.transcript.suffix(3000).description)
        let hints = (serve.stdout.lines + serve.stderr.lines).filter { $0.contains("--max-message-bytes at least 339712") }
        XCTAssertEqual(hints.count, 1, serve.transcript.suffix(3000).description)
        for shard in shards { XCTAssertTrue(shard.isRunning, shard.transcript.suffix(2000).description) }
        _ = worker.waitForExit(timeout: 20)
    }

    func testAShardBoundOutsideItsRangeIsOneErrorLineAndExit64() throws {
        let shard = try launch(["shard", "--bind", try freeLoopbackEndpoint(), "--max-message-bytes", "10"])
        XCTAssertEqual(shard.waitForExit(timeout: 10), 64, shard.transcript)
        XCTAssertEqual(shard.stderr.lines.filter { $0.contains("--max-message-bytes must be between 1024 and 1073741824, got 10") }.count, 1,
                       shard.transcript)
    }
}
