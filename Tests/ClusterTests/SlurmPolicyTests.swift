import XCTest
@testable import Cluster

/// The Slurm job's policy fed events: every transition of SlurmPolicy and its exit status.
final class SlurmPolicyTests: XCTestCase {
    func running(maxRestarts: Int = 3) -> SlurmPolicy {
        var policy = SlurmPolicy(grace: 20, maxRestarts: maxRestarts, checkpointDirectory: "/ck")
        XCTAssertEqual(policy.handle(.begin(requeued: nil)), [.startCoordinator(resume: false), .startWorkers])
        return policy
    }

    func testARequeuedJobResumesFromItsCheckpoint() {
        var policy = SlurmPolicy(grace: 20, maxRestarts: 3, checkpointDirectory: "/ck")
        XCTAssertEqual(policy.handle(.begin(requeued: 1)), [
            .log("Slurm started this job again (restart 1): resuming from the checkpoint in /ck"),
            .startCoordinator(resume: true), .startWorkers,
        ])
        XCTAssertEqual(policy.state, .running)
        XCTAssertEqual(policy.handle(.begin(requeued: nil)), [], "begins once")
    }

    func testAKilledCoordinatorStartsAgainUpToMaxRestarts() {
        var policy = running(maxRestarts: 2)
        for restart in 1...2 {
            XCTAssertEqual(policy.handle(.coordinatorExited(137)), [.checkCheckpoint])
            XCTAssertEqual(policy.state, .restarting(status: 137))
            XCTAssertEqual(policy.handle(.checkpointChecked(exists: restart == 2)), [
                .log(restart == 2
                     ? "the coordinator exited with status 137: starting it again from its checkpoint in /ck (restart 2 of 2); the workers rejoin it"
                     : "the coordinator exited with status 137: starting it again from step 0, no checkpoint yet (restart 1 of 2)"),
                .startCoordinator(resume: restart == 2),
            ])
        }
        XCTAssertEqual(policy.handle(.coordinatorExited(137)), [.log("the coordinator exited with status 137: stopping the workers"), .exit(137)])
        XCTAssertEqual(policy.state, .done(status: 137))
    }

    func testACoordinatorErrorOrStopRequestIsNotRestarted() {
        for status: Int32 in [1, 129, 130, 143] {
            var policy = running()
            XCTAssertEqual(policy.handle(.coordinatorExited(status)).last, .exit(status), "status \(status)")
        }
    }

    func testTheCoordinatorFinishingWaitsForTheWorkers() {
        var policy = running()
        XCTAssertEqual(policy.handle(.coordinatorExited(0)), [.log("the coordinator finished the job"), .startGrace(seconds: 20)])
        XCTAssertEqual(policy.handle(.signal(SIGTERM)), [], "the job is done; a signal changes nothing")
        XCTAssertEqual(policy.handle(.workersExited(1)), [.log("workers ended with status 1 after the job finished"), .exit(0)])
        var quiet = running()
        _ = quiet.handle(.coordinatorExited(0))
        XCTAssertEqual(quiet.handle(.workersExited(0)), [.exit(0)])
        var slow = running()
        _ = slow.handle(.coordinatorExited(0))
        XCTAssertEqual(slow.handle(.graceElapsed), [.log("still running 20 s later: stopping it"),
                                                    .log("workers ended with status 124 after the job finished"), .exit(0)])
    }

    func testEveryWorkerFailingWaitsForTheCoordinatorsWord() {
        var policy = running()
        XCTAssertEqual(policy.handle(.workersExited(137)), [
            .log("every worker has ended (srun exited with status 137): waiting up to 20 s for the coordinator to stop"), .startGrace(seconds: 20),
        ])
        XCTAssertEqual(policy.handle(.coordinatorExited(1)), [.exit(137)], "srun's status when the coordinator did not finish")
        var finished = running()
        _ = finished.handle(.workersExited(137))
        XCTAssertEqual(finished.handle(.coordinatorExited(0)), [.log("the coordinator finished the job"), .exit(0)],
                       "a worker lost while the coordinator finishes: its word counts")
        var hung = running()
        _ = hung.handle(.workersExited(137))
        XCTAssertEqual(hung.handle(.graceElapsed), [.log("still running 20 s later: stopping it"), .exit(137)])
    }

    func testWorkersThatEndWellLeaveTheCoordinatorsStatus() {
        var policy = running()
        XCTAssertEqual(policy.handle(.workersExited(0)), [.startGrace(seconds: 20)])
        XCTAssertEqual(policy.handle(.coordinatorExited(1)), [.log("the coordinator exited with status 1"), .exit(1)])
        var hung = running()
        _ = hung.handle(.workersExited(0))
        XCTAssertEqual(hung.handle(.graceElapsed), [.log("still running 20 s later: stopping it"),
                                                    .log("the coordinator exited with status 124"), .exit(124)])
    }

    func testAStopSignalLetsTheCoordinatorCheckpointThenExits128PlusN() {
        for (signal, name) in [(SIGTERM, "TERM"), (SIGINT, "INT")] {
            var policy = running()
            XCTAssertEqual(policy.handle(.signal(signal)), [
                .log("signal \(name): the coordinator checkpoints at its next step boundary"), .terminateCoordinator, .startGrace(seconds: 20),
            ])
            XCTAssertEqual(policy.handle(.workersExited(143)), [], "the workers' end changes nothing now")
            XCTAssertEqual(policy.handle(.coordinatorExited(143)), [.exit(128 + signal)])
        }
        var stuck = running()
        _ = stuck.handle(.signal(SIGTERM))
        XCTAssertEqual(stuck.handle(.graceElapsed), [.log("still running 20 s later: stopping it"), .exit(143)])
    }

    func testWhileTheCoordinatorIsDown() {
        var signalled = running()
        _ = signalled.handle(.coordinatorExited(137))
        XCTAssertEqual(signalled.handle(.signal(SIGTERM)), [.exit(143)], "no coordinator to checkpoint")
        var orphaned = running()
        _ = orphaned.handle(.coordinatorExited(137))
        XCTAssertEqual(orphaned.handle(.workersExited(0)), [
            .log("every worker has ended (srun exited with status 0) while the coordinator was down"), .exit(1),
        ])
        XCTAssertEqual(orphaned.handle(.checkpointChecked(exists: true)), [], "nothing starts once done")
    }

    func testSettingsFromTheEnvironment() throws {
        let environment = ["SLURM_JOB_ID": "12345", "SLURM_NTASKS": "4", "SLURM_CPUS_PER_TASK": "2", "RECUR_KEY_DIR": "/k"]
        let settings = try SlurmSettings(environment: environment, binary: "/b/recur", nodes: ["n1", "n2"], nodeAddress: "10.0.0.1",
                                         serveArguments: ["--data=/c", "--checkpoint-dir", "/ck", "--init-from", "m", "--steps", "9"])
        XCTAssertEqual(settings.port, 22345)
        XCTAssertEqual(settings.minWorkers, 2)
        XCTAssertEqual(settings.shards, 2)
        XCTAssertEqual(settings.nodeKeys, "/k/recur-slurm.12345")
        XCTAssertEqual(settings.checkpointDirectory, "/ck")
        XCTAssertEqual(settings.shardEndpoints(nodeAddresses: ["10.0.0.1", "10.0.0.2"]), "tcp://10.0.0.1:22346,tcp://10.0.0.2:22346")
        var bounded = settings
        bounded.shardMessageBytes = 339_712
        XCTAssertEqual(Array(bounded.shardArguments(keys: ["--insecure"]).suffix(3)), ["--insecure", "--max-message-bytes", "339712"],
                       "issue 21 item 3: the shards' message bound, given before they bind")
        XCTAssertEqual(settings.coordinatorArguments(resume: true, keys: ["--insecure"], shardArguments: []),
                       ["/b/recur", "serve", "--bind", "tcp://*:22345", "--workers", "4", "--min-workers", "2", "--insecure",
                        "--data=/c", "--checkpoint-dir", "/ck", "--steps", "9", "--resume"])
        XCTAssertEqual(Array(settings.workerArguments(keys: []).suffix(7)), ["work", "--connect", "tcp://10.0.0.1:22345", "--threads", "2", "--data", "/c"])
        func refusal(_ extra: [String: String], _ arguments: [String] = []) -> String? {
            do {
                _ = try SlurmSettings(environment: environment.merging(extra) { $1 }, binary: "b", nodes: ["n"], nodeAddress: nil, serveArguments: arguments)
                return nil
            } catch { return "\(error)" }
        }
        XCTAssertEqual(refusal(["RECUR_MIN_WORKERS": "5"]), "RECUR_MIN_WORKERS must be 1...4, got '5'")
        XCTAssertEqual(refusal(["RECUR_SHARDS": "0"]), "RECUR_SHARDS must be a positive whole number, got '0'")
        XCTAssertEqual(refusal(["RECUR_MAX_RESTARTS": "x"]), "RECUR_MAX_RESTARTS must be a whole number, got 'x'")
        XCTAssertEqual(refusal([:], ["--workers", "2"]), "do not pass --workers: this script sets it (tasks, RECUR_PORT, RECUR_INSECURE)")
        XCTAssertEqual(refusal([:], ["--min-workers=1"]), "set RECUR_MIN_WORKERS instead of --min-workers")
        XCTAssertEqual(refusal(["SLURM_JOB_ID": "x"]), "run me with sbatch (no SLURM_JOB_ID)")
    }
}
