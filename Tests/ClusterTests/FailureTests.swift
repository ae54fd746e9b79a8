import Foundation
import XCTest
import Cluster
import Recurrent
import Training
import Wire

/// Failures end a run cleanly: the coordinator names the worker (rank, host, pid) and the
/// step, keeps a checkpoint of the last completed step and tells the others; workers notice
/// a dead coordinator; Ctrl-C of a local cluster checkpoints and stops every worker. First
/// in one process with a scripted worker, then with real `recur` processes and signals.
final class FailureTests: ClusterTestCase {
    /// Heartbeat timeout of the process tests, and the slack allowed on top of it for a
    /// failure to be noticed and the processes to exit.
    let heartbeat = 3.0
    let slack = 7.0
    let reconnect = 1.0

    // MARK: In process

    func testASilentWorkerIsNamedAndTheLastCompletedStepIsCheckpointed() throws {
        let config = ClusterFixtures.tinyConfig(steps: 20)
        let reference = try ClusterFixtures.localReference(config: ClusterFixtures.tinyConfig(steps: 3),
                                                           directory: temporaryDirectory())
        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        // --balance off: the run waits for the quiet worker (with it on, the other worker computes
        // its chunks meanwhile: ReissueTests).
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 1.5, balance: false)
        let fake = try FakeWorker(endpoint: coordinator.endpoint, identity: "goes-quiet")
        try fake.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [fake.name(rank: 0), "joined"]), coordinator.logs.text)
        let real = try startWorker(coordinator.endpoint)
        try fake.awaitWelcome()
        for _ in 0..<3 {
            try fake.send(.gradientPush(try fake.honestPush(for: try fake.awaitWeights())))
        }
        XCTAssertEqual(try fake.awaitWeights().step, 3)
        // …and now it says nothing more.

        let result = try XCTUnwrap(coordinator.wait(timeout: 15))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertEqual("\(error)", "\(fake.name(rank: 0)) stopped answering at step 4 (no message for 1.5 s)")
        }
        XCTAssertNotNil(coordinator.logs.line(containing: ["wrote checkpoint \(directory.path) at step 3"]), coordinator.logs.text)
        let saved = try Checkpoint.read(from: directory)
        let training = try XCTUnwrap(saved.training)
        XCTAssertEqual(training.step, 3)
        XCTAssertTrue(saved.parameters == reference.values, "the checkpoint is not the state after step 3")
        XCTAssertTrue(training.hiddenH == reference.hiddenH && training.hiddenC == reference.hiddenC,
                      "the checkpoint's carried state is not the state after step 3")

        // The other worker is told and ends normally.
        XCTAssertNoThrow(try XCTUnwrap(real.wait(timeout: 10)).get())
        XCTAssertNotNil(real.logs.line(containing: ["coordinator ended the run", "stopped answering at step 4"]), real.logs.text)

        // Resuming the failed run's checkpoint continues as if nothing had happened.
        let uninterrupted = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        let resumed = try distributedRun(config: config, threads: [1, 1], directory: directory, resume: true)
        XCTAssertTrue(resumed.values == uninterrupted.values, "resume after the failure differs from an uninterrupted run")
    }

    func testAWorkerErrorEndsTheRunNamingTheWorker() throws {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(steps: 20), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: temporaryDirectory()))
        let coordinator = try startCoordinator(session, workers: 2)
        let fake = try FakeWorker(endpoint: coordinator.endpoint, identity: "fails")
        try fake.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [fake.name(rank: 0), "joined"]), coordinator.logs.text)
        let real = try startWorker(coordinator.endpoint)
        try fake.awaitWelcome()
        try fake.send(.gradientPush(try fake.honestPush(for: try fake.awaitWeights())))
        _ = try fake.awaitWeights()
        try fake.send(.error(WireErrorMessage(message: "out of memory")))

        let result = try XCTUnwrap(coordinator.wait(timeout: 15))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertEqual(error as? ClusterError, .workerFailed("\(fake.name(rank: 0)) failed at step 2: out of memory"))
        }
        XCTAssertEqual(try Checkpoint.read(from: session.options.checkpointDirectory!).training?.step, 1)
        XCTAssertEqual(try fake.awaitShutdown(), "\(fake.name(rank: 0)) failed at step 2: out of memory")
        XCTAssertNoThrow(try XCTUnwrap(real.wait(timeout: 10)).get())
    }

    func testAWorkerWhoseCoordinatorGoesSilentStops() throws {
        // A ROUTER that accepts the connection and never answers.
        let silent = try ZMQSocket(context: try ZMQContext(), kind: .router)
        defer { silent.close() }
        let endpoint = try silent.bind("tcp://127.0.0.1:*")
        let worker = try startWorker(endpoint, heartbeatTimeout: 1)
        let result = try XCTUnwrap(worker.wait(timeout: 10))
        XCTAssertThrowsError(try result.get()) { error in
            // It never heard anything: told apart from a coordinator lost mid-run.
            XCTAssertEqual(error as? ClusterError, .coordinatorUnreachable(endpoint: endpoint, seconds: 1))
            XCTAssertEqual("\(error)", "no answer from a coordinator at \(endpoint) within 1 s: is `recur serve` running there and reachable?")
        }
    }

    // MARK: Real processes

    /// `recur serve` on loopback tcp with two `recur work` processes, running until stopped.
    private func startCluster(directory: URL) throws -> (serve: RecurProcess, workers: [RecurProcess], endpoint: String) {
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "2", "--steps", "1000000",
                                "--hidden", "16", "--layers", "1", "--batch", "8", "--seq", "8",
                                "--checkpoint-dir", directory.path, "--heartbeat-timeout", "\(heartbeat)"])
        let workers = try (0..<2).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "\(heartbeat)",
                        "--reconnect-timeout", "\(reconnect)"])
        }
        XCTAssertNotNil(serve.stdout.waitForLine(containing: ["step 10/1000000"], timeout: 30),
                        "the cluster never reached step 10:\n\(serve.transcript)")
        return (serve, workers, endpoint)
    }

    /// The coordinator's exit after losing `victim`: non-zero, naming it and the step, with
    /// a loadable checkpoint of the step it names.
    private func assertRunEnded(_ serve: RecurProcess, naming victim: RecurProcess, reason: String, directory: URL,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let name = try XCTUnwrap(Self.joinedName(pid: victim.pid, in: serve.stdout),
                                 "no join line for pid \(victim.pid):\n\(serve.transcript)", file: file, line: line)
        let status = serve.waitForExit(timeout: heartbeat + slack)
        XCTAssertNotNil(status, "serve still running \(heartbeat + slack) s after the failure:\n\(serve.transcript)", file: file, line: line)
        XCTAssertNotEqual(status, 0, serve.transcript, file: file, line: line)
        let error = try XCTUnwrap(serve.stderr.line(containing: ["recur: \(name.name)", reason, "at step "]),
                                  "no error line naming \(name.name) (\(reason)):\n\(serve.transcript)", file: file, line: line)
        let failedStep = Int(error.components(separatedBy: "at step ").last!.prefix { $0.isNumber })
        let wrote = try XCTUnwrap(serve.stdout.line(containing: ["wrote checkpoint \(directory.path) at step "]),
                                  serve.transcript, file: file, line: line)
        let step = try XCTUnwrap(Int(wrote.components(separatedBy: " at step ").last!), wrote, file: file, line: line)
        XCTAssertGreaterThanOrEqual(step, 10, file: file, line: line)
        XCTAssertEqual(failedStep, step + 1, "the run failed at the step after the checkpoint", file: file, line: line)
        let saved = try Checkpoint.read(from: directory)
        XCTAssertEqual(saved.training?.step, step, file: file, line: line)
        XCTAssertEqual(saved.training?.hiddenH.count, 1 * 8 * 16, file: file, line: line)
    }

    /// The worker that was not hit: told to stop by the coordinator, or ends on its own.
    private func assertSurvivorEnded(_ worker: RecurProcess, file: StaticString = #filePath, line: UInt = #line) {
        let status = worker.waitForExit(timeout: heartbeat + slack)
        XCTAssertNotNil(status, "surviving worker still running:\n\(worker.transcript)", file: file, line: line)
        XCTAssertTrue(status != 0 || worker.stdout.line(containing: ["coordinator ended the run"]) != nil,
                      worker.transcript, file: file, line: line)
    }

    func testKillingAWorkerProcessEndsTheRunWithACheckpoint() throws {
        let directory = try temporaryDirectory()
        let (serve, workers, _) = try startCluster(directory: directory)
        workers[1].send(SIGKILL)
        XCTAssertEqual(workers[1].waitForExit(timeout: 5), 128 + SIGKILL)
        // Gone: the coordinator finds the connection closed, or the heartbeat missing.
        try assertRunEnded(serve, naming: workers[1], reason: "", directory: directory)
        assertSurvivorEnded(workers[0])
    }

    func testAStoppedWorkerProcessIsCaughtByTheHeartbeat() throws {
        let directory = try temporaryDirectory()
        let (serve, workers, _) = try startCluster(directory: directory)
        workers[0].send(SIGSTOP)  // hangs with its socket open: only the heartbeat can tell
        try assertRunEnded(serve, naming: workers[0], reason: "stopped answering", directory: directory)
        assertSurvivorEnded(workers[1])
        workers[0].send(SIGKILL)
        XCTAssertEqual(workers[0].waitForExit(timeout: 5), 128 + SIGKILL)
    }

    /// Workers wait `--reconnect-timeout` for a coordinator at the same address, then exit.
    func testKillingTheCoordinatorEndsTheWorkers() throws {
        let (serve, workers, endpoint) = try startCluster(directory: try temporaryDirectory())
        serve.send(SIGKILL)
        XCTAssertEqual(serve.waitForExit(timeout: 5), 128 + SIGKILL)
        for worker in workers {
            let status = worker.waitForExit(timeout: heartbeat + reconnect + slack)
            XCTAssertNotNil(worker.stdout.line(containing: ["waiting up to \(Int(reconnect)) s for one at that address"]), worker.transcript)
            XCTAssertNotNil(status, "worker still running after its coordinator died:\n\(worker.transcript)")
            XCTAssertNotEqual(status, 0, worker.transcript)
            XCTAssertNotNil(worker.stderr.line(containing: ["recur: coordinator \(endpoint) stopped answering"]), worker.transcript)
        }
    }

    /// The end of a good run: every worker gets the coordinator's shutdown and exits 0. Five
    /// short runs, because a shutdown lost at process exit is a race.
    func testAFinishedServeRunEndsEveryWorkerCleanly() throws {
        for run in 1...5 {
            let directory = try temporaryDirectory()
            let endpoint = try freeLoopbackEndpoint()
            let serve = try launch(["serve", "--bind", endpoint, "--workers", "2", "--steps", "30",
                                    "--hidden", "16", "--layers", "1", "--batch", "8", "--seq", "8",
                                    "--checkpoint-dir", directory.path, "--heartbeat-timeout", "\(heartbeat)"])
            let workers = try (0..<2).map { _ in
                try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "\(heartbeat)"])
            }
            XCTAssertEqual(serve.waitForExit(timeout: 30), 0, "run \(run): \(serve.transcript)")
            XCTAssertEqual(try Checkpoint.read(from: directory).training?.step, 30)
            for worker in workers {
                let status = worker.waitForExit(timeout: heartbeat + slack)
                XCTAssertNotNil(worker.stdout.line(containing: ["coordinator ended the run: training finished at step 30"]),
                                "run \(run): the worker never got the shutdown:\n\(worker.transcript)")
                XCTAssertEqual(status, 0, "run \(run): \(worker.transcript)")
            }
        }
    }

    /// `Signals` turns SIGINT/SIGTERM into a stop request carrying 130/143; `recur train`
    /// exits with it, and so should `recur serve` and `recur work`.
    func testInterruptingServeCheckpointsStopsTheWorkersAndExits130() throws {
        let directory = try temporaryDirectory()
        let (serve, workers, _) = try startCluster(directory: directory)
        serve.send(SIGINT)
        let status = serve.waitForExit(timeout: heartbeat + slack)
        XCTAssertNotNil(serve.stderr.line(containing: ["recur: interrupted by SIGINT"]), serve.transcript)
        let wrote = try XCTUnwrap(serve.stdout.line(containing: ["wrote checkpoint \(directory.path) at step "]), serve.transcript)
        XCTAssertEqual(try Checkpoint.read(from: directory).training?.step, Int(wrote.components(separatedBy: " at step ").last!))
        for worker in workers {
            XCTAssertEqual(worker.waitForExit(timeout: heartbeat + slack), 0, worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["coordinator ended the run: interrupted by SIGINT"]), worker.transcript)
        }
        XCTAssertEqual(status, 130, "recur serve should exit 128 + SIGINT like recur train:\n\(serve.transcript)")
    }

    func testTerminatingAWorkerEndsItWith143AndTheRunNamesIt() throws {
        let directory = try temporaryDirectory()
        let (serve, workers, _) = try startCluster(directory: directory)
        workers[1].send(SIGTERM)
        let status = workers[1].waitForExit(timeout: heartbeat + slack)
        XCTAssertNotNil(status, workers[1].transcript)
        XCTAssertNotNil(workers[1].stderr.line(containing: ["interrupted by SIGTERM"]), workers[1].transcript)
        try assertRunEnded(serve, naming: workers[1], reason: "", directory: directory)
        assertSurvivorEnded(workers[0])
        XCTAssertEqual(status, 143, "recur work should exit 128 + SIGTERM:\n\(workers[1].transcript)")
    }

    func testInterruptingALocalClusterCheckpointsStopsTheWorkersAndExits130() throws {
        let directory = try temporaryDirectory()
        let (train, pids) = try startLocalCluster(directory: directory)
        XCTAssertTrue(pids.allSatisfy(Self.isAlive))

        train.send(SIGINT)
        let status = train.waitForExit(timeout: heartbeat + slack)
        XCTAssertEqual(status, 130, train.transcript)
        XCTAssertNotNil(train.stderr.line(containing: ["interrupted by SIGINT"]), train.transcript)
        let wrote = try XCTUnwrap(train.stdout.line(containing: ["wrote checkpoint \(directory.path) at step "]), train.transcript)
        let step = try XCTUnwrap(Int(wrote.components(separatedBy: " at step ").last!))
        XCTAssertGreaterThanOrEqual(step, 10)
        XCTAssertEqual(try Checkpoint.read(from: directory).training?.step, step)
        // The workers were told to stop and were waited for: none outlives the launcher.
        XCTAssertNotNil(train.stdout.line(containing: ["coordinator ended the run: interrupted by SIGINT"]), train.transcript)
        for pid in pids {
            XCTAssertTrue(ClusterFixtures.eventually(timeout: 1) { !Self.isAlive(pid) }, "recur work pid \(pid) still running")
        }
    }

    /// A hang-up (the terminal went away) stops a local run like Ctrl-C does, with exit 129.
    func testAHangUpCheckpointsStopsTheWorkersAndExits129() throws {
        let directory = try temporaryDirectory()
        let (train, pids) = try startLocalCluster(directory: directory)
        train.send(SIGHUP)
        XCTAssertEqual(train.waitForExit(timeout: heartbeat + slack), 129, train.transcript)
        XCTAssertNotNil(train.stdout.line(containing: ["wrote checkpoint \(directory.path) at step "]), train.transcript)
        for pid in pids {
            XCTAssertTrue(ClusterFixtures.eventually(timeout: 2) { !Self.isAlive(pid) }, "recur work pid \(pid) still running")
        }
    }

    /// Local workers of a coordinator killed outright exit within 2 s (not after the heartbeat
    /// timeout), and the run leaves no socket file behind.
    func testLocalWorkersOfAKilledCoordinatorExitWithinTwoSeconds() throws {
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
        let (train, pids) = try startLocalCluster(directory: try temporaryDirectory(), heartbeatTimeout: 30)
        train.send(SIGKILL)
        XCTAssertEqual(train.waitForExit(timeout: 5), 128 + SIGKILL)
        let killed = Date()
        for pid in pids {
            XCTAssertTrue(ClusterFixtures.eventually(timeout: 2) { !Self.isAlive(pid) }, "recur work pid \(pid) still running")
        }
        XCTAssertLessThan(Date().timeIntervalSince(killed), 2.5)
        let after = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
        XCTAssertTrue(after.subtracting(before).filter { $0.hasPrefix("recur-\(train.pid)") }.isEmpty, "a socket file was left")
    }

    private func startLocalCluster(directory: URL, heartbeatTimeout: Double? = nil) throws -> (RecurProcess, [pid_t]) {
        let train = try launch(["train", "--workers", "2", "--threads", "1", "--steps", "1000000",
                                "--hidden", "16", "--layers", "1", "--batch", "8", "--seq", "8",
                                "--checkpoint-dir", directory.path, "--heartbeat-timeout", "\(heartbeatTimeout ?? heartbeat)",
                                "--sample-length", "0"])
        XCTAssertNotNil(train.stdout.waitForLine(containing: ["step 10/1000000"], timeout: 30), train.transcript)
        let pids = Self.joinedPids(in: train.stdout)
        pids.forEach(killInTearDown)
        XCTAssertEqual(pids.count, 2, train.transcript)
        return (train, pids)
    }
}
