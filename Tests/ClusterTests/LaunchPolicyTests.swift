import XCTest
@testable import Cluster

/// The launcher's policy fed events, no processes and no clocks: every transition of
/// LaunchPolicy (docs/DESIGN.md, "The launcher") and the exit status it ends with.
final class LaunchPolicyTests: XCTestCase {
    /// Three hosts with one worker each; shards on all three; the coordinator on the first.
    func makePolicy(minWorkers: Int = 1, maxRestarts: Int = 3, timeout: Int? = 60, shards: Bool = true) -> LaunchPolicy {
        let hosts = (1...3).map { HostLine(target: "198.18.0.\($0)", line: $0) }
        return LaunchPolicy(.init(jobID: "recur-job.t.1.ab", hosts: hosts, coordinatorHost: 0, shardHosts: shards ? [0, 1, 2] : [],
                                  workerHosts: [0, 1, 2], minWorkers: minWorkers, maxRestarts: maxRestarts, grace: 14,
                                  timeout: timeout, checkpointDirectory: "ckpt"))
    }

    /// A started policy and the ids of its processes by label.
    func started(_ policy: inout LaunchPolicy) -> [String: Int] {
        var ids: [String: Int] = [:]
        for case .start(let process) in policy.handle(.begin) { ids[process.label] = process.id }
        return ids
    }

    func logs(_ actions: [LaunchAction]) -> [String] { actions.compactMap { if case .log(let line) = $0 { return line } else { return nil } } }

    func testBeginStartsShardsThenTheCoordinatorThenTheWorkersAndTheJobTimer() {
        var policy = makePolicy()
        let actions = policy.handle(.begin)
        let labels = actions.compactMap { action -> String? in if case .start(let p) = action { return p.label } else { return nil } }
        XCTAssertEqual(labels, ["198.18.0.1 shard 0", "198.18.0.2 shard 1", "198.18.0.3 shard 2", "198.18.0.1 coordinator",
                                "198.18.0.1 worker 0", "198.18.0.2 worker 1", "198.18.0.3 worker 2"])
        XCTAssertEqual(actions.last, .startTimer(.job, seconds: 60))
        XCTAssertEqual(policy.state, .running)
        XCTAssertEqual(policy.running.count, 7)
        XCTAssertEqual(policy.handle(.begin), [], "a second begin starts nothing")
        var untimed = makePolicy(timeout: nil, shards: false)
        XCTAssertFalse(untimed.handle(.begin).contains(.startTimer(.job, seconds: 60)))
    }

    func testALostWorkerAboveMinWorkersLetsTheJobGoOn() {
        var policy = makePolicy(minWorkers: 1)
        let ids = started(&policy)
        let actions = policy.handle(.exited(process: ids["198.18.0.3 worker 2"]!, status: 137))
        XCTAssertEqual(logs(actions), ["[198.18.0.3 worker 2] exited with status 137 (killed by signal 9, SIGKILL): the coordinator goes on while at least 1 worker(s) remain"])
        XCTAssertEqual(actions.count, 1)
        XCTAssertEqual(policy.state, .running)
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.2 worker 1"]!, status: 0)), [], "a worker that ends well says nothing")
    }

    func testALostWorkerWithMinWorkersAllFailsTheJobWithItsStatus() {
        var policy = makePolicy(minWorkers: 3)
        let ids = started(&policy)
        var actions = policy.handle(.exited(process: ids["198.18.0.3 worker 2"]!, status: 137))
        XCTAssertEqual(logs(actions), ["[198.18.0.3 worker 2] exited with status 137 (killed by signal 9, SIGKILL): the job fails; waiting up to 14 s for the coordinator to stop, then stopping every process"])
        XCTAssertEqual(actions.last, .startTimer(.grace, seconds: 14))
        XCTAssertEqual(policy.state, .failing(status: 137))
        actions = policy.handle(.exited(process: ids["198.18.0.2 worker 1"]!, status: 1))
        XCTAssertEqual(actions, [.log("[198.18.0.2 worker 1] exited with status 1")], "the first failure counts; no second grace timer")
        // The coordinator stops by itself (too few workers): the worker's status is the job's.
        actions = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 1))
        XCTAssertEqual(actions, [.stopAll])
        XCTAssertEqual(policy.state, .stopping(status: 137))
        XCTAssertEqual(policy.handle(.stopped), [.log("job recur-job.t.1.ab failed (exit status 137)"), .exit(137)])
        XCTAssertEqual(policy.state, .done(status: 137))
    }

    func testAFailingShardWaitsForTheCoordinatorUntilGraceThenStops() {
        var policy = makePolicy()
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["198.18.0.2 shard 1"]!, status: 255))
        XCTAssertEqual(policy.state, .failing(status: 255))
        let actions = policy.handle(.timerElapsed(.grace))
        XCTAssertEqual(actions, [.log("the coordinator did not stop within 14 s of the failure: stopping every process"), .stopAll])
        XCTAssertEqual(policy.state, .stopping(status: 255))
    }

    func testAKilledCoordinatorStartsAgainFromItsCheckpoint() {
        var policy = makePolicy()
        let ids = started(&policy)
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 137)), [.checkCheckpoint])
        XCTAssertEqual(policy.state, .restarting(label: "198.18.0.1 coordinator", status: 137))
        let actions = policy.handle(.checkpointChecked(exists: true))
        XCTAssertEqual(logs(actions), ["[198.18.0.1 coordinator] exited with status 137 (killed by signal 9, SIGKILL): starting it again from its checkpoint in ckpt (restart 1 of 3); the workers rejoin it"])
        guard case .start(let process)? = actions.last else { return XCTFail("no start: \(actions)") }
        XCTAssertEqual(process.role, .coordinator)
        XCTAssertTrue(process.resume)
        XCTAssertEqual(policy.state, .running)
        XCTAssertEqual(policy.handle(.checkpointChecked(exists: true)), [], "an answer nobody asked for changes nothing")
    }

    func testACoordinatorLostBeforeItsFirstCheckpointStartsFromStepZero() {
        var policy = makePolicy()
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 255))
        let actions = policy.handle(.checkpointChecked(exists: false))
        XCTAssertEqual(logs(actions), ["[198.18.0.1 coordinator] exited with status 255 (ssh failed or lost the connection): starting it again from step 0, no checkpoint yet in ckpt (restart 1 of 3)"])
        guard case .start(let process)? = actions.last else { return XCTFail("no start: \(actions)") }
        XCTAssertFalse(process.resume)
    }

    func testRestartsStopAtMaxRestartsThenTheCoordinatorsStatusEndsTheJob() {
        var policy = makePolicy(maxRestarts: 2)
        var coordinator = started(&policy)["198.18.0.1 coordinator"]!
        for restart in 1...2 {
            XCTAssertEqual(policy.handle(.exited(process: coordinator, status: 134)), [.checkCheckpoint])
            let actions = policy.handle(.checkpointChecked(exists: true))
            XCTAssertTrue(logs(actions)[0].hasSuffix("(restart \(restart) of 2); the workers rejoin it"), "\(actions)")
            guard case .start(let process)? = actions.last else { return XCTFail("no start") }
            coordinator = process.id
        }
        let actions = policy.handle(.exited(process: coordinator, status: 134))
        XCTAssertEqual(actions, [.log("[198.18.0.1 coordinator] exited with status 134 (killed by signal 6, SIGABRT): stopping every process"), .stopAll])
        XCTAssertEqual(policy.restarts, 2)
        XCTAssertEqual(policy.handle(.stopped), [.log("job recur-job.t.1.ab failed (exit status 134)"), .exit(134)])
    }

    func testNoRestartsWithMaxRestartsZero() {
        var policy = makePolicy(maxRestarts: 0)
        let ids = started(&policy)
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 137)).last, .stopAll)
        XCTAssertEqual(policy.state, .stopping(status: 137))
    }

    /// A recur error or a stop request (HUP, INT, TERM) is the coordinator's word: no restart.
    func testACoordinatorThatFailsOrWasAskedToStopIsNotStartedAgain() {
        for status: Int32 in [1, 64, 129, 130, 143] {
            var policy = makePolicy()
            let ids = started(&policy)
            let actions = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: status))
            XCTAssertEqual(actions.last, .stopAll, "status \(status)")
            XCTAssertEqual(policy.state, .stopping(status: status))
        }
        XCTAssertTrue(LaunchPolicy.restartable(255))
        XCTAssertTrue(LaunchPolicy.restartable(137))
        XCTAssertFalse(LaunchPolicy.restartable(193))
        XCTAssertFalse(LaunchPolicy.restartable(128))
    }

    func testAFailureWhileTheCoordinatorRestartsStopsEverything() {
        var policy = makePolicy()
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 137))
        XCTAssertEqual(logs(policy.handle(.exited(process: ids["198.18.0.2 worker 1"]!, status: 255))).first?.hasSuffix("goes on while at least 1 worker(s) remain"), true)
        let actions = policy.handle(.exited(process: ids["198.18.0.3 shard 2"]!, status: 1))
        XCTAssertEqual(actions, [.log("[198.18.0.3 shard 2] exited with status 1: stopping every process"), .stopAll])
        XCTAssertEqual(policy.handle(.checkpointChecked(exists: true)), [], "no coordinator starts once the job stops")
    }

    func testTheCoordinatorFinishingEndsTheJobOnceTheOthersEnd() {
        var policy = makePolicy(shards: false)
        let ids = started(&policy)
        var actions = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 0))
        XCTAssertEqual(actions, [.log("[198.18.0.1 coordinator] finished the job"), .startTimer(.grace, seconds: 14)])
        XCTAssertEqual(policy.state, .finished)
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.1 worker 0"]!, status: 0)), [])
        actions = policy.handle(.exited(process: ids["198.18.0.2 worker 1"]!, status: 255))
        XCTAssertEqual(actions, [.log("[198.18.0.2 worker 1] exited with status 255 (ssh failed or lost the connection) after the job finished")])
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.3 worker 2"]!, status: 0)), [.stopAll])
        XCTAssertEqual(policy.handle(.stopped), [.log("job recur-job.t.1.ab succeeded"), .exit(0)])
    }

    func testWorkersThatOutliveGraceAfterTheJobAreStoppedAndTheJobSucceeds() {
        var policy = makePolicy()
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 0))
        XCTAssertEqual(policy.handle(.timerElapsed(.grace)),
                       [.log("worker(s) still running 14 s after the coordinator finished: stopping them"), .stopAll])
        XCTAssertEqual(policy.state, .stopping(status: 0))
    }

    func testACoordinatorAloneThatFinishesEndsTheJobAtOnce() {
        let hosts = [HostLine(target: "h")]
        var policy = LaunchPolicy(.init(jobID: "j", hosts: hosts, coordinatorHost: 0, shardHosts: [], workerHosts: [0],
                                        minWorkers: 1, maxRestarts: 3, grace: 30, timeout: nil, checkpointDirectory: "c"))
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["h worker 0"]!, status: 0))
        XCTAssertEqual(policy.handle(.exited(process: ids["h coordinator"]!, status: 0)), [.log("[h coordinator] finished the job"), .stopAll])
    }

    func testStopSignalsEndTheJobWith128PlusTheSignal() {
        for (signal, status, name) in [(SIGHUP, Int32(129), "HUP"), (SIGINT, 130, "INT"), (SIGTERM, 143, "TERM")] {
            var policy = makePolicy()
            _ = started(&policy)
            XCTAssertEqual(policy.handle(.signal(signal)), [.log("interrupted (signal \(name)): stopping every process"), .stopAll])
            XCTAssertEqual(policy.handle(.signal(SIGINT)), [], "a second signal while stopping changes nothing")
            XCTAssertEqual(policy.handle(.exited(process: 0, status: 143)), [], "ends while stopping are the driver's business")
            XCTAssertEqual(policy.handle(.stopped), [.log("job recur-job.t.1.ab failed (exit status \(status))"), .exit(status)])
        }
    }

    func testTheJobTimeoutStopsEverythingWith124() {
        var policy = makePolicy(timeout: 90)
        _ = started(&policy)
        XCTAssertEqual(policy.handle(.timerElapsed(.job)), [.log("--timeout 90 s elapsed: stopping every process"), .stopAll])
        XCTAssertEqual(policy.handle(.stopped).last, .exit(124))
        XCTAssertEqual(policy.handle(.timerElapsed(.grace)), [], "no timer matters once done")
    }

    func testAGraceTimerWithoutAFailureChangesNothing() {
        var policy = makePolicy()
        _ = started(&policy)
        XCTAssertEqual(policy.handle(.timerElapsed(.grace)), [])
        XCTAssertEqual(policy.state, .running)
    }

    func testAFailingJobEndsWithTheFirstFailureWhateverTheCoordinatorSays() {
        var policy = makePolicy(minWorkers: 3, shards: false)
        let ids = started(&policy)
        _ = policy.handle(.exited(process: ids["198.18.0.1 worker 0"]!, status: 1))
        _ = policy.handle(.exited(process: ids["198.18.0.2 worker 1"]!, status: 0))
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.3 worker 2"]!, status: 0)), [])
        XCTAssertEqual(policy.state, .failing(status: 1), "the coordinator still runs")
        XCTAssertEqual(policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 143)), [.stopAll])
        XCTAssertEqual(policy.state, .stopping(status: 1))
    }

    func testSignalsAndTheTimeoutAlsoStopARestartOrAJobNotYetStarted() {
        var restarting = makePolicy()
        let ids = started(&restarting)
        _ = restarting.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 137))
        XCTAssertEqual(restarting.handle(.timerElapsed(.job)).last, .stopAll)
        XCTAssertEqual(restarting.state, .stopping(status: 124))
        var preparing = makePolicy()
        XCTAssertEqual(preparing.handle(.signal(SIGTERM)), [.log("interrupted (signal TERM): stopping every process"), .stopAll])
        XCTAssertEqual(preparing.handle(.begin), [], "nothing starts once stopping")
        XCTAssertEqual(preparing.handle(.timerElapsed(.job)), [])
    }

    func testAnUnknownProcessEndingChangesNothing() {
        var policy = makePolicy()
        _ = started(&policy)
        XCTAssertEqual(policy.handle(.exited(process: 99, status: 1)), [])
        XCTAssertEqual(policy.state, .running)
    }

    // MARK: - --join

    func testAJoinRequestIsPreparedThenItsWorkersStartWithTheNextRanks() {
        var policy = makePolicy()
        _ = started(&policy)
        let host = HostLine(target: "198.18.0.4", workers: 2, threads: 1)
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.77", line: "198.18.0.4 workers=2 threads=1")),
                       [.prepareJoin(reply: "reply.77", host: host, ranks: 3..<5)])
        let actions = policy.handle(.joinPrepared(reply: "reply.77", failure: nil))
        let labels = actions.compactMap { action -> String? in if case .start(let p) = action { return p.label } else { return nil } }
        XCTAssertEqual(labels, ["198.18.0.4 worker 3", "198.18.0.4 worker 4"])
        XCTAssertEqual(Array(actions.suffix(2)), [
            .log("added 198.18.0.4 to the job: worker(s) 3...4 join at the coordinator's next step boundary"),
            .reply(to: "reply.77", text: "added 198.18.0.4 to job recur-job.t.1.ab: worker(s) 3...4 started"),
        ])
        XCTAssertEqual(policy.configuration.workerHosts, [0, 1, 2, 3, 3])
    }

    func testJoinRequestsThatCannotBeAddedAreRefusedWithTheReason() {
        var policy = makePolicy()
        _ = started(&policy)
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.1", line: "198.18.0.2 workers=1")),
                       [.reply(to: "reply.1", text: "refused: --host: host '198.18.0.2' is already listed on line 2 (use workers=N)")])
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.2", line: "node9 workers=0")),
                       [.reply(to: "reply.2", text: "refused: workers=0 adds nothing")])
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.3", line: "node9 cpus=4")),
                       [.reply(to: "reply.3", text: "refused: --host: unknown field 'cpus=4' (expected workers=N, threads=K or address=ADDR)")])
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.4", line: "  # nothing")),
                       [.reply(to: "reply.4", text: "refused: --host needs a host name")])
        XCTAssertEqual(policy.handle(.joinRequested(reply: "../etc/x", line: "node9")), [], "no reply channel of --join: nobody to answer")
        XCTAssertEqual(policy.configuration.workerHosts, [0, 1, 2])
    }

    func testAHostThatCannotBePreparedIsRefusedAndItsRanksAreGivenAgain() {
        var policy = makePolicy()
        _ = started(&policy)
        _ = policy.handle(.joinRequested(reply: "reply.5", line: "node9 workers=2"))
        XCTAssertEqual(policy.handle(.joinPrepared(reply: "reply.5", failure: "ssh: connect to host node9: timed out")), [
            .log("could not add node9: ssh: connect to host node9: timed out"),
            .reply(to: "reply.5", text: "refused: preparing node9 failed: ssh: connect to host node9: timed out"),
        ])
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.6", line: "node10")),
                       [.prepareJoin(reply: "reply.6", host: HostLine(target: "node10"), ranks: 3..<4)])
    }

    func testJoinRequestsAreTakenOneAtATimeInOrder() {
        var policy = makePolicy()
        _ = started(&policy)
        _ = policy.handle(.joinRequested(reply: "reply.1", line: "a"))
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.2", line: "b")), [], "waits for the first")
        XCTAssertEqual(policy.handle(.joinPrepared(reply: "reply.2", failure: nil)), [], "not the one being prepared")
        let actions = policy.handle(.joinPrepared(reply: "reply.1", failure: nil))
        XCTAssertEqual(actions.last, .prepareJoin(reply: "reply.2", host: HostLine(target: "b", line: 0), ranks: 4..<5))
        XCTAssertTrue(actions.contains(.reply(to: "reply.1", text: "added a to job recur-job.t.1.ab: worker(s) 3...3 started")))
    }

    func testAJobThatIsEndingRefusesJoinRequests() {
        var policy = makePolicy()
        let ids = started(&policy)
        _ = policy.handle(.joinRequested(reply: "reply.1", line: "a"))
        _ = policy.handle(.joinRequested(reply: "reply.2", line: "b"))
        _ = policy.handle(.exited(process: ids["198.18.0.1 coordinator"]!, status: 0))
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.3", line: "c")),
                       [.reply(to: "reply.3", text: "refused: job recur-job.t.1.ab is ending")])
        XCTAssertEqual(policy.handle(.joinPrepared(reply: "reply.1", failure: nil)),
                       [.reply(to: "reply.1", text: "refused: job recur-job.t.1.ab is ending"),
                        .reply(to: "reply.2", text: "refused: job recur-job.t.1.ab is ending")])
        let stop = policy.handle(.signal(SIGTERM))
        XCTAssertEqual(stop.last, .stopAll)
        XCTAssertEqual(policy.handle(.joinRequested(reply: "reply.4", line: "d")),
                       [.reply(to: "reply.4", text: "refused: job recur-job.t.1.ab is ending")])
    }

    func testStoppingAnswersTheJoinsInProgress() {
        var policy = makePolicy()
        _ = started(&policy)
        _ = policy.handle(.joinRequested(reply: "reply.1", line: "a"))
        _ = policy.handle(.joinRequested(reply: "reply.2", line: "b"))
        XCTAssertEqual(policy.handle(.timerElapsed(.job)), [
            .log("--timeout 60 s elapsed: stopping every process"), .stopAll,
            .reply(to: "reply.1", text: "refused: job recur-job.t.1.ab is ending"),
            .reply(to: "reply.2", text: "refused: job recur-job.t.1.ab is ending"),
        ])
        XCTAssertEqual(policy.handle(.joinPrepared(reply: "reply.1", failure: nil)), [], "answered already")
    }

    func testStatusDescriptions() {
        XCTAssertEqual(describeStatus(0), "0")
        XCTAssertEqual(describeStatus(1), "1")
        XCTAssertEqual(describeStatus(143), "143 (killed by signal 15, SIGTERM)")
        XCTAssertEqual(describeStatus(255), "255 (ssh failed or lost the connection)")
        XCTAssertEqual(signalName(34), "RTMIN")
        XCTAssertEqual(signalName(63), "RTMAX-1")
    }
}
