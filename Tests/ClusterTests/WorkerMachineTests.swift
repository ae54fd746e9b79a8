import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// The worker's protocol with no sockets, threads or sleeps: every message kind in every
/// state (joining, awaiting the welcome, working, computing, rejoining, finished), from the
/// coordinator and from a shard, taken or refused with its reason; silence, a lost parent,
/// a stop, a rejoin and a new welcome mid-run. Steps and weights: `WorkerStepTests`.
final class WorkerMachineTests: WorkerMachineTestCase {
    private let allKinds = MessageKind.allCases

    // MARK: Joining and awaiting the welcome

    func testTheFirstTickSaysHelloAndNothingBeatsBeforeTheWelcome() throws {
        XCTAssertEqual(state, "joining")
        XCTAssertNil(machine.silenceLimit, "no silence is judged before the hello")
        let actions = handle(.tick)
        guard case .hello(let hello)? = sent(actions).first else { return XCTFail("no hello") }
        XCTAssertEqual(hello.joinToken, "worker-machine-token")
        XCTAssertEqual(state, "awaitingWelcome")
        XCTAssertNil(machine.heartbeat, "no rank to beat with yet")
        XCTAssertNil(machine.rank)
        XCTAssertEqual(machine.silenceLimit, 10)
        XCTAssertTrue(handle(.tick).isEmpty, "one hello")
    }

    func testBeforeTheHelloMessagesAreIgnored() throws {
        for kind in allKinds {
            XCTAssertEqual(logs(try feed(sample(kind))), ["ignored unexpected \(kind.rawValue) from the coordinator before welcome"])
        }
        XCTAssertEqual(state, "joining")
    }

    func testEveryKindFromTheCoordinatorBeforeTheWelcome() throws {
        handle(.tick)
        for kind in allKinds where ![.welcome, .error, .shutdown, .heartbeat].contains(kind) {
            XCTAssertEqual(logs(try feed(sample(kind))), ["ignored unexpected \(kind.rawValue) before welcome"], "\(kind)")
        }
        XCTAssertTrue(try feed(sample(.heartbeat)).isEmpty)
        XCTAssertEqual(state, "awaitingWelcome")
        let actions = try feed(sample(.welcome))
        XCTAssertEqual(logs(actions).first?.hasPrefix("worker 0 of 2: streams 0..<4, 1 thread(s), from step 1"), true, "\(logs(actions))")
        XCTAssertEqual(state, "working")
        XCTAssertEqual(machine.rank, 0)
    }

    func testAnErrorOrShutdownBeforeTheWelcomeEndsTheWorker() throws {
        handle(.tick)
        guard case ClusterError.refused(let reason)? = failure(try feed(sample(.error))) else { return XCTFail() }
        XCTAssertEqual(reason, "broken")
        XCTAssertEqual(state, "finished")
        XCTAssertTrue(try feed(sample(.welcome)).isEmpty, "finished takes nothing")

        machine = makeMachine()
        handle(.tick)
        let actions = try feed(sample(.shutdown))
        XCTAssertEqual(failure(actions) as? StopRequest.Stopped, StopRequest.Stopped(reason: "coordinator ended the run before it started: over"))
        guard case .error(let error)? = sent(actions).first else { return XCTFail("the coordinator is told") }
        XCTAssertEqual(error.message, "worker (pid \(pid)) stopped: coordinator ended the run before it started: over")
    }

    func testHelloFirstSendsTheHelloAgainAtMostOnceASecond() throws {
        handle(.tick)
        now += 0.5
        XCTAssertFalse(sentHello(try feed(.error(.helloFirst))))
        now += 0.6
        XCTAssertTrue(sentHello(try feed(.error(.helloFirst))))
        XCTAssertFalse(sentHello(try feed(.error(.helloFirst))))
        XCTAssertEqual(state, "awaitingWelcome")
    }

    func testShardMessagesBeforeTheWelcomeAreIgnored() throws {
        handle(.tick)
        for kind in allKinds {
            XCTAssertEqual(logs(try feed(sample(kind), from: .shard(1))), ["ignored unexpected \(kind.rawValue) from shard 1 before welcome"])
        }
        XCTAssertEqual(state, "awaitingWelcome")
    }

    func testACoordinatorNeverHeardIsUnreachableAfterTheTimeout() throws {
        handle(.tick)
        now += 9
        XCTAssertTrue(handle(.coordinatorSilent(seconds: 10.5)).isEmpty, "within the timeout since the hello")
        now += 2
        XCTAssertEqual(failure(handle(.coordinatorSilent(seconds: 11))) as? ClusterError,
                       .coordinatorUnreachable(endpoint: "tcp://coordinator:5555", seconds: 10))
    }

    func testACoordinatorThatSpokeThenFellSilentBeforeTheWelcomeIsLost() throws {
        handle(.tick)
        try feed(.error(.helloFirst))
        now += 11
        XCTAssertEqual(failure(handle(.coordinatorSilent(seconds: 11))) as? ClusterError,
                       .coordinatorLost(endpoint: "tcp://coordinator:5555", seconds: 10))
    }

    // MARK: Working

    func testEveryKindFromTheCoordinatorWhileWorking() throws {
        _ = try working()
        for kind in [MessageKind.hello, .gradientPush, .shardSetup, .shardCommand, .shardReport] {
            XCTAssertEqual(logs(try feed(sample(kind))), ["worker 0: ignored unexpected \(kind.rawValue)"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat)).isEmpty)
        XCTAssertNotNil(job(try feed(sample(.weights))), "the awaited step's weights are computed on")
        XCTAssertEqual(state, "computing")
    }

    func testShutdownWhileWorkingFinishes() throws {
        _ = try working()
        let actions = try feed(sample(.shutdown))
        XCTAssertEqual(logs(actions), ["worker 0: coordinator ended the run: over"])
        XCTAssertTrue(finishes(actions))
        XCTAssertEqual(state, "finished")
        XCTAssertTrue(handle(.tick).isEmpty)
    }

    func testAnErrorWhileWorkingEndsTheWorker() throws {
        _ = try working()
        guard case ClusterError.refused(let reason)? = failure(try feed(sample(.error))) else { return XCTFail() }
        XCTAssertEqual(reason, "broken")
    }

    func testEveryKindFromAShardOfARunWithoutShards() throws {
        _ = try working()
        for kind in [MessageKind.hello, .welcome, .gradientPush, .shutdown, .shardSetup, .shardCommand, .shardReport] {
            XCTAssertEqual(logs(try feed(sample(kind), from: .shard(0))), ["worker 0: ignored unexpected \(kind.rawValue) from shard 0"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: .shard(0)).isEmpty)
        XCTAssertEqual("\(failure(try feed(sample(.weights), from: .shard(0)))!)",
                       "\(ClusterError.protocolViolation("weights from a shard of a run without shards"))")
    }

    func testEveryKindFromAShardOfAShardedRun() throws {
        _ = try working(shards: 2)
        for kind in [MessageKind.hello, .welcome, .gradientPush, .shutdown, .shardSetup, .shardCommand, .shardReport] {
            XCTAssertEqual(logs(try feed(sample(kind), from: .shard(1))), ["worker 0: ignored unexpected \(kind.rawValue) from shard 1"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: .shard(1)).isEmpty)
        XCTAssertEqual(state, "working", "weights: WorkerStepTests")
    }

    func testAShardsErrorEvenHelloFirstEndsTheWorker() throws {
        _ = try working(shards: 2)
        guard case ClusterError.refused(let reason)? = failure(try feed(.error(.helloFirst), from: .shard(1))) else { return XCTFail() }
        XCTAssertEqual(reason, "hello first")
    }

    func testHeartbeatsCarryTheRankAndTheAwaitedStep() throws {
        _ = try working()
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 0, step: 0))
        XCTAssertEqual(machine.silenceLimit, 10)
    }

    func testMessagesWhileComputingAreIgnored() throws {
        _ = try computing()
        XCTAssertNil(machine.silenceLimit, "the driver reads nothing while computing")
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 0, step: 0))
        for kind in allKinds {
            XCTAssertEqual(logs(try feed(sample(kind))), ["worker 0: ignored \(kind.rawValue) from the coordinator while computing step 1"])
        }
        XCTAssertEqual(state, "computing")
    }

    // MARK: A new welcome mid-run

    func testANewWelcomeMidRunIsANewAssignment() throws {
        let first = try working()
        let actions = try feed(.welcome(welcome(rank: 1, workers: 1, streams: 0..<8, step: 3)))
        XCTAssertEqual(logs(actions).first, "worker 0: new assignment from step 4: streams 0..<8")
        XCTAssertEqual(logs(actions).dropFirst().first?.hasPrefix("worker 1 of 1: streams 0..<8, 1 thread(s), from step 4"), true)
        XCTAssertTrue(closesShardLinks(actions), "the previous assignment's shards are left")
        let next = try XCTUnwrap(machine.assignment)
        XCTAssertFalse(next === first)
        XCTAssertEqual(machine.rank, 1)
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 1, step: 3))
        XCTAssertEqual(logs(try feed(weights(step: 0))), ["worker 1: rejected weights for step 1, expected step 4"])
    }

    func testAWelcomeThatIsNotWholeChunksOrPastTheRunEndsTheWorker() throws {
        handle(.tick)
        XCTAssertEqual("\(failure(try feed(.welcome(welcome(streams: 1..<4))))!)",
                       "\(ClusterError.protocolViolation("welcome assigns streams 1..<4, not whole chunks of 2 within 8"))")
        machine = makeMachine()
        handle(.tick)
        XCTAssertEqual("\(failure(try feed(.welcome(welcome(step: 6))))!)",
                       "\(ClusterError.protocolViolation("welcome starts at step 7 of a run of 5 steps"))")
        machine = makeMachine()
        handle(.tick)
        var bad = welcome()
        bad.state = [WireTensor(name: "h", shape: [1], values: [0])]
        XCTAssertTrue("\(failure(try feed(.welcome(bad)))!)".contains("welcome state: state tensors [\"h\"]"))
    }

    // MARK: Silence, rejoin, parent, stop

    func testASilentCoordinatorIsWaitedForAndJoinedAgain() throws {
        _ = try working()
        now += 11
        let actions = handle(.coordinatorSilent(seconds: 11))
        XCTAssertEqual(logs(actions), ["worker 0: coordinator tcp://coordinator:5555 stopped answering (no message for 10 s); waiting up to 20 s for one at that address"])
        XCTAssertTrue(closesShardLinks(actions) && sentHello(actions))
        XCTAssertEqual(state, "rejoining")
        XCTAssertNil(machine.heartbeat)
        XCTAssertNil(machine.silenceLimit, "rejoining waits for its deadline")
        for kind in allKinds where ![.welcome, .error, .shutdown, .heartbeat].contains(kind) {
            XCTAssertEqual(logs(try feed(sample(kind))), ["ignored unexpected \(kind.rawValue) before welcome"])
        }
        now += 19
        XCTAssertTrue(handle(.tick).isEmpty)
        let rejoined = try feed(.welcome(welcome(rank: 1, streams: 4..<8, step: 2)))
        XCTAssertEqual(logs(rejoined).first, "worker 0: rejoined at step 3")
        XCTAssertEqual(logs(rejoined).dropFirst().first?.hasPrefix("worker 1 of 2: streams 4..<8"), true)
        XCTAssertEqual(state, "working")
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 1, step: 2))
    }

    func testTheCoordinatorsOtherWordsWhileRejoining() throws {
        let rejoining = { () throws in
            self.machine = self.makeMachine()
            _ = try self.working()
            self.handle(.coordinatorSilent(seconds: 11))
        }
        try rejoining()
        XCTAssertTrue(try feed(sample(.heartbeat)).isEmpty)
        XCTAssertFalse(sentHello(try feed(.error(.helloFirst))), "the hello just went")
        now += 1
        XCTAssertTrue(sentHello(try feed(.error(.helloFirst))))
        for kind in allKinds {
            XCTAssertEqual(logs(try feed(sample(kind), from: .shard(0))), ["ignored unexpected \(kind.rawValue) from shard 0 before welcome"])
        }
        guard case ClusterError.refused(let reason)? = failure(try feed(sample(.error))) else { return XCTFail() }
        XCTAssertEqual(reason, "broken")
        try rejoining()
        let actions = try feed(sample(.shutdown))
        XCTAssertEqual((failure(actions) as? StopRequest.Stopped)?.reason, "coordinator ended the run before it started: over")
        guard case .error(let error)? = sent(actions).first else { return XCTFail("the coordinator is told") }
        XCTAssertEqual(error.message, "worker 0 (pid \(pid)) stopped: coordinator ended the run before it started: over")
    }

    func testFinishedTakesNothing() throws {
        _ = try working()
        try feed(sample(.shutdown))
        for kind in allKinds {
            XCTAssertTrue(try feed(sample(kind)).isEmpty && feed(sample(kind), from: .shard(0)).isEmpty, "\(kind)")
        }
        let events: [ClientEvent] = [.tick, .coordinatorSilent(seconds: 99), .parentGone(pid: 1), .stopRequested(.init(reason: "x")),
                                     .earlyPartReady(slices: 0..<1), .computeFinished(startedAt: 0), .gradientSent]
        XCTAssertTrue(events.allSatisfy { handle($0).isEmpty })
        XCTAssertNil(machine.heartbeat)
        XCTAssertNil(machine.silenceLimit)
    }

    func testARejoinEndsAtItsDeadline() throws {
        _ = try working()
        handle(.coordinatorSilent(seconds: 11))
        now += 20.5
        XCTAssertEqual(failure(handle(.tick)) as? ClusterError,
                       .coordinatorLost(endpoint: "tcp://coordinator:5555", seconds: 30))
    }

    func testWithoutAReconnectTimeoutASilentCoordinatorEndsTheWorker() throws {
        machine = makeMachine(reconnectTimeout: 0)
        _ = try working()
        let error = failure(handle(.coordinatorSilent(seconds: 11)))
        XCTAssertEqual(error as? ClusterError, .coordinatorLost(endpoint: "tcp://coordinator:5555", seconds: 10))
        XCTAssertTrue("\(error!)".contains("stopped answering"))
    }

    func testHelloFirstWhileWorkingRejoinsARestartedCoordinator() throws {
        machine = makeMachine(reconnectTimeout: 0)
        _ = try working()
        let actions = try feed(.error(.helloFirst))
        XCTAssertEqual(logs(actions), ["worker 0: the coordinator at tcp://coordinator:5555 asks for a hello (it restarted); joining again"])
        XCTAssertTrue(sentHello(actions))
        XCTAssertEqual(state, "rejoining")
        now += 9.9
        XCTAssertTrue(handle(.tick).isEmpty, "the heartbeat timeout even without a reconnect timeout")
        XCTAssertEqual(logs(try feed(.welcome(welcome()))).first, "worker 0: rejoined at step 1")
    }

    func testAParentThatIsGoneEndsTheWorkerInEveryState() throws {
        for setUp in [{}, { self.handle(.tick) }, { _ = try self.working() }, { _ = try self.computing() }] as [() throws -> Void] {
            machine = makeMachine()
            try setUp()
            let actions = handle(.parentGone(pid: 77))
            guard case .abandonCoordinator? = actions.first else { return XCTFail("the link is dropped first") }
            XCTAssertEqual(failure(actions) as? ClusterError, .coordinatorExited(pid: 77))
            XCTAssertEqual(state, "finished")
        }
    }

    func testAStopIsReportedToTheCoordinatorWithTheRank() throws {
        _ = try working()
        let actions = handle(.stopRequested(StopRequest.Stopped(reason: "interrupted (SIGINT)", exitCode: 130)))
        guard case .send(.error(let error), let required)? = actions.first else { return XCTFail("\(actions)") }
        XCTAssertEqual(error.message, "worker 0 (pid \(pid)) stopped: interrupted (SIGINT)")
        XCTAssertFalse(required, "the coordinator may be gone already")
        XCTAssertEqual((failure(actions) as? StopRequest.Stopped)?.exitCode, 130)
        XCTAssertEqual(state, "finished")
    }
}
