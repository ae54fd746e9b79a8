import Foundation
import XCTest
import Cluster
import Training
import Wire

/// Issue 21's hostile-peer harness: a live sharded run (`recur shard` × 2, `recur serve`,
/// `recur work` × 2 over loopback tcp) attacked for a minute by peers with and without the
/// job's token, each attack bounded in count and time: junk and truncated messages, messages
/// past every limit, peers that never read their refusals, floods of hellos whose host forges
/// log lines and terminal escapes, pushes with forged chunk ranges to the shards and to the
/// coordinator. The run is then stopped (SIGINT: a checkpoint of the last completed step S) and
/// its weights must be the bytes of an undisturbed `--workers 1` run of S steps; the log must
/// stay bounded and clean; the coordinator's and each shard's peak resident memory must stay
/// under `peakBound`. The shards are started as the launchers start them, with the message
/// bound of this model's setup (`ShardServer.maxMessageBytes`).
final class HostileRunTests: ClusterTestCase {
    /// Seconds of attack.
    private let duration = 60.0
    /// Peak resident memory (VmHWM) allowed to the coordinator and to each shard: an idle one is
    /// 30 to 40 MB; what libzmq may buffer is bounded (DESIGN.md, "Memory under load") by
    /// (members + 4) × 5 × the message limit, under 10 MB for this model.
    private let peakBound = 300 << 20
    private let model = ["--hidden", "32", "--layers", "2", "--batch", "8", "--seq", "8", "--chunk", "2"]

    /// One attacker: `body(i)` for i = 0, 1, … until `count` or the deadline, on its own thread.
    private final class Attack: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var sent = 0

        init(_ name: String, count: Int, until deadline: Date, _ body: @escaping (Int) throws -> Void) {
            let thread = Thread { [self] in
                var i = 0
                while i < count, Date() < deadline {
                    if (try? body(i)) == nil { usleep(20_000) }   // a full queue: back off, go on
                    i += 1
                }
                lock.lock(); sent = i; lock.unlock()
                done.signal()
            }
            thread.name = name
            thread.start()
        }

        func wait() -> Int {
            done.wait()
            lock.lock(); defer { lock.unlock() }
            return sent
        }
    }

    private func peakResidentBytes(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return nil }
        return kib << 10
    }

    func testALiveShardedRunAttackedForAMinuteKeepsItsBytesAndBoundedMemory() throws {
        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let shardEndpoints = try (0..<2).map { _ in try freeLoopbackEndpoint() }
        var config = TrainingConfig()
        (config.hidden, config.layers) = (32, 2)
        let setupBytes = ShardServer.maxMessageBytes(for: try RunPlan(config: config, corpus: .builtin()))
        let shards = try shardEndpoints.map {
            try launch(["shard", "--bind", $0, "--heartbeat-timeout", "10", "--max-message-bytes", "\(setupBytes)"])
        }
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "2", "--shards", "2",
                                "--shard-endpoints", shardEndpoints.joined(separator: ","), "--steps", "1000000",
                                "--checkpoint-dir", directory.path, "--checkpoint-every", "100", "--print-every", "100",
                                "--heartbeat-timeout", "10", "--sample-length", "0"] + model)
        let workers = try (0..<2).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "10"])
        }
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["step 100 checkpoint"], timeout: 60), serve.transcript)

        let deadline = Date().addingTimeInterval(duration)
        let targets = [endpoint] + shardEndpoints
        var attacks: [Attack] = []
        // Junk and truncated protobufs, 1 B to 200 kB, to the coordinator and both shards.
        for (t, target) in targets.enumerated() {
            for p in 0..<2 {
                let peer = try FakeWorker(endpoint: target, identity: "junk-\(t)-\(p)")
                attacks.append(Attack("junk", count: 20_000, until: deadline) { i in
                    let size = [1, 3, 100, 4_096, 200_000][i % 5]
                    var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: i &* 31), count: size)
                    if i % 3 == 0 { bytes = Array(WireCodec.encode(.heartbeat(Heartbeat(rank: 0, step: UInt64(i)))).prefix(size)) }
                    try peer.send(bytes: bytes)
                })
            }
            // Past every limit: 3 MB, which libzmq drops before buffering.
            let huge = try FakeWorker(endpoint: target, identity: "huge-\(t)")
            let big = [UInt8](repeating: 0x5A, count: 3 << 20)
            attacks.append(Attack("huge", count: 300, until: deadline) { _ in try huge.send(bytes: big) })
            // Peers that never read: wrong-token hellos, each answered with an Error.
            for p in 0..<2 {
                let mute = try FakeWorker(endpoint: target, identity: "mute-\(t)-\(p)")
                var hello = mute.hello()
                hello.joinToken = "wrong"
                attacks.append(Attack("mute", count: 50_000, until: deadline) { _ in try mute.send(.hello(hello)) })
            }
        }
        // Hello floods whose host forges log lines and escape codes (60 kB), with the token
        // and without it.
        for p in 0..<4 {
            let forger = try FakeWorker(endpoint: endpoint, identity: "forger-\(p)")
            var hello = forger.hello()
            hello.host = "x\nworker 0 (host n1, pid 1) joined\u{1B}[2J" + String(repeating: "A", count: 60_000)
            hello.joinToken = p % 2 == 0 ? ClusterTestCase.joinToken : "nope"
            attacks.append(Attack("forger", count: 20_000, until: deadline) { _ in try forger.send(.hello(hello)) })
        }
        // Forged pushes: to each shard after a hello with the token but no rank ticket, and to
        // the coordinator from a process that is not a worker.
        for (t, target) in targets.enumerated() {
            let pusher = try FakeWorker(endpoint: target, identity: "pusher-\(t)")
            var hello = pusher.hello()
            hello.joinToken = ClusterTestCase.joinToken
            try pusher.send(.hello(hello))
            attacks.append(Attack("pusher", count: 20_000, until: deadline) { i in
                let ranges: [(UInt32, UInt32)] = [(2, 1), (0, 4), (0, 2), (4, 4), (0, UInt32.max)]
                let (begin, end) = ranges[i % ranges.count]
                let slab = WireTensor(name: "slab", shape: [64], values: Array(repeating: 1e30, count: 64))
                try pusher.send(.gradientPush(GradientPush(step: UInt64(i % 50), tokenCount: 1, lossSum: 1, tensors: [slab],
                                                           computeSeconds: 0, communicateSeconds: 0, part: UInt32(i % 3),
                                                           parts: 2, chunkBegin: begin, chunkEnd: end, offset: UInt64(i % 7))))
            })
        }
        let sent = attacks.map { $0.wait() }.reduce(0, +)
        print("hostile peers sent \(sent) messages in \(Int(duration)) s")
        XCTAssertTrue(serve.isRunning, ([serve] + shards + workers).map { String($0.transcript.suffix(3000)) }.joined(separator: "\n====\n"))
        let peaks = ([serve] + shards).map { peakResidentBytes($0.pid) }
        print("peak resident memory (MB): coordinator, shards: \(peaks.map { $0.map { "\($0 >> 20)" } ?? "gone" })")

        serve.send(SIGINT)
        XCTAssertEqual(serve.waitForExit(timeout: 60), 130, serve.transcript.suffix(4000).description)
        for worker in workers { XCTAssertNotNil(worker.waitForExit(timeout: 20), worker.transcript) }
        for shard in shards { XCTAssertNotNil(shard.waitForExit(timeout: 20), shard.transcript.suffix(2000).description) }
        for (name, peak) in zip(["coordinator", "shard 0", "shard 1"], peaks) {
            guard let peak else { XCTFail("\(name) had exited before the attack ended: no peak memory to read"); continue }
            XCTAssertLessThanOrEqual(peak, peakBound, "\(name) peaked at \(peak >> 20) MB")
        }

        // The log: bounded, no forged line, no escape code.
        let lines = serve.stdout.lines
        XCTAssertLessThan(lines.count, 20_000, "\(sent) hostile messages gave \(lines.count) log lines")
        XCTAssertEqual(lines.filter { $0.hasPrefix("worker 0 (host n1, pid 1) joined") }.count, 0, "a peer forged a log line")
        XCTAssertFalse(serve.stdout.text.contains("\u{1B}"), "a peer's escape code reached the log")
        XCTAssertEqual(lines.filter { $0.contains(") joined with") }.count, 2, "only the two real workers joined")

        // The bytes of an undisturbed run of the same steps.
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("state.json"))) as? [String: Any]
        let steps = try XCTUnwrap(state?["step"] as? Int)
        XCTAssertGreaterThan(steps, 100)
        let reference = try temporaryDirectory()
        let train = try launch(["train", "--workers", "1", "--threads", "2", "--steps", "\(steps)", "--sample-length", "0",
                                "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 300), 0, train.transcript)
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")),
                       "the attacked run's weights after \(steps) steps differ from an undisturbed run's")
    }
}
