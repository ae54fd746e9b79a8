import Foundation
import XCTest
@testable import Cluster
import Training

/// Issue 23's stragglers beyond BalanceTests' one slow worker: a real worker process throttled
/// by its operating system, a worker slow for a stretch of steps only, and a fleet of two
/// speeds. Each run must keep the `--workers 1` bytes; the log must show the chunks where the
/// speeds say they belong. Speed figures are scripts/bench-scaling's (`--only stragglers`),
/// never asserted here.
final class StragglerTests: ClusterTestCase {
    /// Real compute, no emulation: `recur train --workers 2` with one of its two `recur work`
    /// children stopped half of every 50 ms (SIGSTOP/SIGCONT, as a throttled or shared CPU
    /// would), for the whole run. The run completes and its weights are the `--workers 1` bytes.
    func testAWorkerThrottledToHalfItsCPUKeepsTheBytes() throws {
        let model = ["--hidden", "128", "--layers", "2", "--batch", "16", "--seq", "32", "--chunk", "2", "--steps", "30",
                     "--sample-length", "0", "--eval-every", "0"]
        let throttled = try temporaryDirectory(), reference = try temporaryDirectory()
        let train = try launch(["train", "--workers", "2", "--threads", "1", "--heartbeat-timeout", "10",
                                "--checkpoint-dir", throttled.path] + model)
        XCTAssertNotNil(train.stdout.waitForLine(containing: [") joined"], timeout: 30), train.transcript)
        let pid = try XCTUnwrap(Self.joinedPids(in: train.stdout).first, train.transcript)
        killInTearDown(pid)
        let duty = DutyCycle(pid: pid, period: 0.05, stoppedShare: 0.5, limit: 60)
        let status = train.waitForExit(timeout: 60)
        duty.finish()
        XCTAssertEqual(status, 0, train.transcript)
        // A run that ended before the throttle took hold would test nothing.
        XCTAssertGreaterThan(duty.stops, 5, "the worker was hardly throttled: \(train.transcript)")

        let single = try launch(["train", "--workers", "1", "--threads", "1", "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(single.waitForExit(timeout: 60), 0, single.transcript)
        XCTAssertEqual(try Data(contentsOf: throttled.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")), "throttling changed the weights")
    }

    /// `--emulate-slowdown 4@6-17` on one of four workers (8 chunks, 20 ms per chunk): its
    /// chunks move away while it is slow and come back after, and the bytes stay.
    func testATransientStragglerLosesChunksAndGetsThemBack() throws {
        var config = ClusterFixtures.tinyConfig(steps: 34)
        config.chunkStreams = 1   // N = 8: 8 chunks, 2 per worker to begin with
        let run = try runEmulatedFleet(config, delays: Array(repeating: ChunkDelay(milliseconds: 20), count: 3)
                                                + [ChunkDelay(milliseconds: 20, factor: 4, slowSteps: 6...17)])
        let (coordinator, fast, slow) = (run.coordinator, Array(run.workers.prefix(3)), run.workers[3])

        // The 5-step median sees the slowdown from step 9 (2/2/2/2 → one chunk for the slow
        // worker) and its end from step 21 (back to 2 each); 34 steps leave room for both.
        let rank = try XCTUnwrap(slow.worker.rank)
        let moves = coordinator.logs.lines.filter { $0.contains("rebalanced chunks at step") }
        let away = try XCTUnwrap(moves.firstIndex { $0.contains("worker \(rank) 2→1") }, coordinator.logs.text)
        XCTAssertNotNil(moves[(away + 1)...].first { $0.contains("worker \(rank) 1→2") }, "chunks never came back: \(coordinator.logs.text)")
        XCTAssertEqual(try lastBlock(of: slow, workers: 4), 2, "the slow worker's last assignment: \(slow.logs.text)")
        XCTAssertEqual(try fast.map { try lastBlock(of: $0, workers: 4) }, [2, 2, 2])
        try assertSameBytes(run)
    }

    /// Two speeds, 2:1 (20 and 40 ms per chunk, the emulated equivalent of `--threads 2` beside
    /// `--threads 1`), over 12 chunks: the blocks end at 8 and 4 chunks, and the bytes stay.
    func testTwoSpeedsGetChunksInTheirRatio() throws {
        var config = ClusterFixtures.tinyConfig(steps: 20)
        config.streams = 12
        config.chunkStreams = 1   // 12 chunks, 6 per worker to begin with
        let run = try runEmulatedFleet(config, delays: [ChunkDelay(milliseconds: 20), ChunkDelay(milliseconds: 40)])
        let (coordinator, quick, slow) = (run.coordinator, run.workers[0], run.workers[1])

        // 6/6 predicts 240 ms a step, 8/4 160 ms, 9/3 180 ms, 7/5 200 ms: the real compute adds
        // the same per chunk to both and keeps 8/4 the best, so later moves end there.
        let rank = try XCTUnwrap(slow.worker.rank)
        let line = try XCTUnwrap(coordinator.logs.line(containing: ["rebalanced chunks at step"]), coordinator.logs.text)
        XCTAssertTrue(line.contains("worker \(rank) 6→"), line)
        let blocks = (quick: try lastBlock(of: quick, workers: 2), slow: try lastBlock(of: slow, workers: 2))
        XCTAssertEqual(blocks.quick + blocks.slow, 12)
        XCTAssertEqual(blocks.slow, 4, "blocks \(blocks): 8:4 is the best split: \(coordinator.logs.text)")
        try assertSameBytes(run)
    }

}

/// Stops a process for `stoppedShare` of every `period` seconds (SIGSTOP, then SIGCONT), on a
/// thread of its own, until `finish()`, `limit` seconds, or the process is gone. It always
/// leaves the process continued: a stopped worker would outlive the test.
final class DutyCycle: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var stopCount = 0
    private let ended = DispatchSemaphore(value: 0)
    let pid: pid_t

    init(pid: pid_t, period: Double, stoppedShare: Double, limit: Double) {
        self.pid = pid
        let stopped = UInt32(period * stoppedShare * 1e6), free = UInt32(period * (1 - stoppedShare) * 1e6)
        let deadline = Date().addingTimeInterval(limit)
        Thread { [self] in
            defer { kill(pid, SIGCONT); ended.signal() }
            while isRunning, Date() < deadline, ClusterTestCase.isAlive(pid) {
                guard kill(pid, SIGSTOP) == 0 else { break }
                lock.withLock { stopCount += 1 }
                usleep(stopped)
                kill(pid, SIGCONT)
                usleep(free)
            }
        }.start()
    }

    private var isRunning: Bool { lock.withLock { running } }
    /// How many times the process was stopped.
    var stops: Int { lock.withLock { stopCount } }

    /// Ends the cycle (bounded wait for its thread) and continues the process.
    func finish() {
        lock.withLock { running = false }
        _ = ended.wait(timeout: .now() + 5)
        kill(pid, SIGCONT)
    }
}
