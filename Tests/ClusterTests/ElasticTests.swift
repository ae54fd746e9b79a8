import Foundation
import XCTest
import Cluster
import Training

/// Runs that lose a worker or their coordinator and still end with the bytes of a run that
/// never failed.
final class ElasticTests: ClusterTestCase {
    private let model = ["--hidden", "64", "--layers", "2", "--batch", "16", "--seq", "16", "--chunk", "2",
                         "--sample-length", "0"]
    /// `serve` prints no sample.
    private var serveModel: [String] { Array(model.dropLast(2)) }

    private func reference(steps: Int) throws -> Data {
        let directory = try temporaryDirectory()
        let train = try launch(["train", "--workers", "1", "--threads", "2", "--steps", "\(steps)",
                                "--checkpoint-dir", directory.path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 120), 0, train.transcript)
        return try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
    }

    /// `recur train --workers 4 --min-workers 3`: a worker killed after step 20 costs one
    /// recomputed step; the run ends 0 with the `--workers 1` bytes.
    func testALocalRunLosesAWorkerAndEndsWithTheSameBytes() throws {
        try loseAWorker(shards: 1)
    }

    /// The same with two parameter shards: they drop the step's partial sums and broadcast its
    /// weights again for the new assignment.
    func testAShardedRunLosesAWorkerAndEndsWithTheSameBytes() throws {
        try loseAWorker(shards: 2)
    }

    private func loseAWorker(shards: Int) throws {
        let steps = 300
        let directory = try temporaryDirectory()
        // --balance off: with re-issue the dead worker's chunks go to the others at once every
        // step, so a run this short can end before its heartbeat timeout names it (the path of
        // a silent worker whose chunks are re-issued is ReissueTests'); here the elastic path.
        let train = try launch(["train", "--workers", "4", "--threads", "1", "--min-workers", "3", "--steps", "\(steps)",
                                "--shards", "\(shards)", "--checkpoint-dir", directory.path, "--heartbeat-timeout", "5",
                                "--balance", "off"] + model)
        XCTAssertNotNil(train.stdout.waitForLine(containing: ["step 20/\(steps)"], timeout: 60), train.transcript)
        let pids = Self.joinedPids(in: train.stdout)
        pids.forEach(killInTearDown)
        XCTAssertEqual(pids.count, 4, train.transcript)
        kill(pids[1], SIGKILL)
        XCTAssertEqual(train.waitForExit(timeout: 120), 0, train.transcript)
        XCTAssertNotNil(train.stdout.line(containing: ["continuing with 3 worker(s)", "is computed again"]), train.transcript)
        let bytes = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(bytes, try reference(steps: steps), "a lost worker changed the weights")
    }

    /// `recur serve --workers 4 --min-workers 4` with four workers; a fifth `recur work`
    /// started after step 40 joins at a step boundary, takes its share of the chunks, and the
    /// final weights equal the `--workers 1` run's.
    func testAFifthWorkerJoiningAfterStep40KeepsTheBytes() throws {
        let steps = 300
        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "4", "--min-workers", "4", "--steps", "\(steps)",
                                "--checkpoint-dir", directory.path, "--heartbeat-timeout", "5"] + serveModel)
        let workers = try (0..<4).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "5"])
        }
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["step 40/\(steps)"], timeout: 90), serve.transcript)
        let fifth = try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "5"])
        XCTAssertEqual(serve.waitForExit(timeout: 120), 0, serve.transcript)
        XCTAssertNotNil(serve.stdout.line(containing: ["joins the running job", "(5 worker(s))"]), serve.transcript)
        for worker in workers + [fifth] { XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript) }
        XCTAssertNotNil(fifth.stdout.line(containing: ["of 5: streams"]), fifth.transcript)
        let bytes = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(bytes, try reference(steps: steps), "a joining worker changed the weights")
    }

    /// `recur serve` killed after step 25 (`--checkpoint-every 10`) and started again with
    /// `--resume`: its two workers rejoin, and the final weights equal an uninterrupted run's.
    func testAKilledCoordinatorRestartedWithResumeIsRejoinedAndEndsWithTheSameBytes() throws {
        let steps = 300
        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let serveArguments = ["serve", "--bind", endpoint, "--workers", "2", "--steps", "\(steps)", "--checkpoint-every", "10",
                              "--checkpoint-dir", directory.path, "--heartbeat-timeout", "2"] + serveModel
        let first = try launch(serveArguments)
        let workers = try (0..<2).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "2", "--reconnect-timeout", "30"])
        }
        XCTAssertNotNil(first.stdout.waitForLine(containing: ["step 30 checkpoint"], timeout: 60), first.transcript)
        first.send(SIGKILL)
        XCTAssertEqual(first.waitForExit(timeout: 5), 128 + SIGKILL)
        let resumed = try launch(serveArguments + ["--resume"])
        XCTAssertEqual(resumed.waitForExit(timeout: 120), 0, resumed.transcript)
        for worker in workers {
            XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["rejoined at step"]), worker.transcript)
        }
        let bytes = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(bytes, try reference(steps: steps), "the restarted run changed the weights")
    }
}

/// A restarted coordinator asks the workers it hears before their hello for one
/// (`WireErrorMessage.helloFirst`), so they rejoin at once, not after the heartbeat timeout.
final class CoordinatorRestartTests: ClusterTestCase {
    func testWorkersRejoinARestartedCoordinatorLongBeforeTheHeartbeatTimeout() throws {
        let steps = 200, timeout = 30.0
        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let model = ["--hidden", "32", "--layers", "1", "--batch", "8", "--seq", "16", "--chunk", "2"]
        let serveArguments = ["serve", "--bind", endpoint, "--workers", "2", "--steps", "\(steps)", "--checkpoint-every", "10",
                              "--checkpoint-dir", directory.path, "--heartbeat-timeout", "\(timeout)"] + model
        let first = try launch(serveArguments)
        let workers = try (0..<2).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "\(timeout)"])
        }
        XCTAssertNotNil(first.stdout.waitForLine(containing: ["step 20 checkpoint"], timeout: 60), first.transcript)
        first.send(SIGKILL)
        XCTAssertEqual(first.waitForExit(timeout: 5), 128 + SIGKILL)
        let resumed = try launch(serveArguments + ["--resume"])
        XCTAssertNotNil(resumed.stdout.waitForLine(containing: ["waiting for 2 worker(s)"], timeout: 30), resumed.transcript)
        let listening = Date()
        XCTAssertNotNil(resumed.stdout.waitForLine(containing: ["joined", "(2/2)"], timeout: timeout), resumed.transcript)
        let rejoin = Date().timeIntervalSince(listening)
        print("workers rejoined the restarted coordinator \(String(format: "%.3f", rejoin)) s after it listened")
        XCTAssertLessThan(rejoin, timeout / 3, "the workers waited for the heartbeat timeout: \(resumed.transcript)")
        XCTAssertEqual(resumed.waitForExit(timeout: 120), 0, resumed.transcript)
        for worker in workers {
            XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["asks for a hello"]), worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["rejoined at step"]), worker.transcript)
            XCTAssertNil(worker.stdout.line(containing: ["stopped answering"]), worker.transcript)
        }
        let rejections = resumed.stdout.lines.filter { $0.contains("rejected message") && $0.contains("before hello") }
        XCTAssertLessThanOrEqual(rejections.count, 2, "one line per worker at most:\n\(resumed.transcript)")

        let reference = try temporaryDirectory()
        let train = try launch(["train", "--workers", "1", "--threads", "2", "--steps", "\(steps)", "--sample-length", "0",
                                "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 120), 0, train.transcript)
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")),
                       "the restarted run changed the weights")
    }
}
