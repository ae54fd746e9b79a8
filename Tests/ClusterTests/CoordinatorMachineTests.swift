import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// The coordinator's membership and message handling with no sockets, threads or sleeps:
/// events are fed to a `CoordinatorMachine` and its actions read back. Every message kind is
/// tried in every state (joining, assigning, gathering, between steps) from a member and from
/// a stranger, and is taken or refused with its reason; time is an argument.
final class CoordinatorMachineTests: XCTestCase {
    private var plan: RunPlan!
    private var machine: CoordinatorMachine!
    private var now = 1000.0
    private let a: PeerIdentity = Array("worker-a".utf8), b: PeerIdentity = Array("worker-b".utf8)
    private let stranger: PeerIdentity = Array("stranger".utf8)
    private let token = "coordinator-machine-token"
    private var next: CarriedState!

    override func setUpWithError() throws {
        plan = try RunPlan(config: ClusterFixtures.tinyConfig(steps: 5), corpus: ClusterFixtures.corpus)
        machine = makeMachine()
        next = CarriedState(model: plan.model, streams: plan.config.streams)
    }

    private func makeMachine(minWorkers: Int? = nil, pushesMayRunAhead: Bool = false) -> CoordinatorMachine {
        var options = CoordinatorOptions(workers: 2)
        options.heartbeatTimeout = 10
        options.joinTimeout = 60
        options.minWorkers = minWorkers
        options.joinToken = token
        return CoordinatorMachine(plan: plan, options: options, fingerprint: Fingerprint.hello(corpus: ClusterFixtures.corpus, threads: 0),
                                  pushesMayRunAhead: pushesMayRunAhead, now: now)
    }

    // MARK: Feeding

    @discardableResult
    private func feed(_ message: Message, from peer: PeerIdentity) throws -> [CoordinatorMachine.Action] {
        try WireCodec.encode(message).withUnsafeBytes { bytes in
            machine.handle(.received(peer, try WireCodec.decode(bytes, limits: .standard)), now: now)
        }
    }

    private func hello(token: String? = nil, pid: UInt32 = 7) -> Message {
        .hello(Fingerprint.hello(corpus: ClusterFixtures.corpus, threads: 1, joinToken: token ?? self.token))
    }

    /// A complete push of chunks `begin..<end` for `step`: zeros, loss 1, the node's state.
    /// `claimed`: the chunk range the push states, when it is not `begin..<end` (a forged one).
    private func push(begin: Int, end: Int, step: UInt64 = 0, tokens: Int? = nil, claimed: (UInt32, UInt32)? = nil) -> Message {
        let streams = plan.streams(ofChunks: begin..<end)
        let state = CarriedState(model: plan.model, streams: streams.count)
        return .gradientPush(GradientPush(
            step: step, tokenCount: UInt64(tokens ?? streams.count * plan.config.predictionsPerStream), lossSum: 1,
            tensors: plan.layout.slices.map { WireTensor(name: $0.name, shape: $0.shape, values: Array(repeating: 0, count: $0.count)) },
            state: state.wireTensors(streams: 0..<streams.count), computeSeconds: 0.5, communicateSeconds: 0,
            chunkBegin: claimed?.0 ?? UInt32(begin), chunkEnd: claimed?.1 ?? UInt32(end)))
    }

    private func sample(_ kind: MessageKind) -> Message {
        switch kind {
        case .hello: return hello()
        case .welcome: return .welcome(Welcome(rank: 0, workerCount: 1, runConfig: "{}", streamBegin: 0, streamEnd: 2, step: 0, state: []))
        case .weights: return .weights(Weights(step: 0, resetState: false, tensors: []))
        case .gradientPush: return push(begin: 0, end: 2)
        case .heartbeat: return .heartbeat(Heartbeat(rank: 0, step: 0))
        case .shutdown: return .shutdown(Shutdown(reason: "over"))
        case .error: return .error(WireErrorMessage(message: "out of memory"))
        case .shardSetup: return .shardSetup(ShardSetup(runConfig: "{}", shard: 0, shardCount: 1, step: 0, workerCount: 1,
                                                        parameters: WireTensor(name: "slab", shape: [1], values: [0]), optimizerState: [],
                                                        optimizerSteps: 0, joinToken: "", vocabularySize: 1, labelCount: 0))
        case .shardCommand: return .shardCommand(ShardCommand(kind: .sendState, step: 0))
        case .shardReport: return .shardReport(ShardReport(kind: .ready, step: 0))
        case .reissue: return .reissue(Reissue(step: 0, chunkBegin: 0, chunkEnd: 2, state: []))
        }
    }

    // MARK: Reading actions

    private func rejections(_ actions: [CoordinatorMachine.Action]) -> [String] {
        actions.compactMap { if case .reject(_, let r) = $0 { return r } else { return nil } }
    }
    private func replies(_ actions: [CoordinatorMachine.Action]) -> [String] {
        actions.compactMap { if case .reply(.error(let e), _) = $0 { return e.message } else { return nil } }
    }
    private func logs(_ actions: [CoordinatorMachine.Action]) -> [String] {
        actions.compactMap { if case .log(let l) = $0 { return l } else { return nil } }
    }
    private func lost(_ actions: [CoordinatorMachine.Action]) -> String? {
        actions.lazy.compactMap { if case .lost(let l) = $0 { return "\(l.error)" } else { return nil } }.first
    }
    private func failure(_ actions: [CoordinatorMachine.Action]) -> String? {
        actions.lazy.compactMap { if case .fail(let e) = $0 { return "\(e)" } else { return nil } }.first
    }
    private func completes(_ actions: [CoordinatorMachine.Action]) -> Bool {
        actions.contains { if case .pushComplete = $0 { return true } else { return false } }
    }
    private func joinCompletes(_ actions: [CoordinatorMachine.Action]) -> Bool {
        actions.contains { if case .joinComplete = $0 { return true } else { return false } }
    }

    // MARK: Getting to each state

    /// Both workers joined and were given chunks 0..<2 (a) and 2..<4 (b) at step 0.
    private func assigned(step: Int = 0) throws {
        try feed(hello(), from: a)
        XCTAssertTrue(joinCompletes(try feed(hello(), from: b)))
        let workers = machine.joined.enumerated().map { rank, member in
            WorkerPeer(identity: member.identity, rank: rank, hello: member.hello, chunks: rank * 2..<(rank + 1) * 2, plan: plan)
        }
        machine.assign(workers, step: step, now: now)
        machine.pushState = next
    }

    private func gathering(step: Int = 0) throws {
        try assigned(step: step)
        for peer in machine.workers { peer.pushes.forEach { $0.expect(step: UInt64(step)) } }
        machine.gather(step: step, now: now)
    }

    // MARK: Joining

    func testJoiningAdmitsGoodHellosUntilEveryWorkerIsIn() throws {
        let first = try feed(hello(), from: a)
        XCTAssertEqual(logs(first), ["worker 0 (host \(ProcessInfo.processInfo.hostName), pid \(getpid())) joined with 1 thread(s) (1/2)"])
        XCTAssertFalse(joinCompletes(first))
        XCTAssertTrue(joinCompletes(try feed(hello(), from: b)))
        XCTAssertEqual(machine.joined.map(\.identity), [a, b])
    }

    func testJoiningRefusesWrongTokensAndOtherCorpora() throws {
        let wrong = try feed(hello(token: "guess"), from: stranger)
        XCTAssertEqual(replies(wrong).count, 1)
        XCTAssertTrue(rejections(wrong)[0].hasPrefix("refused worker on"), "\(rejections(wrong))")
        guard case .hello(var other) = hello() else { return XCTFail() }
        other.corpusDigest = String(repeating: "0", count: 64)
        XCTAssertTrue(rejections(try feed(.hello(other), from: stranger))[0].contains("refused worker"))
        XCTAssertTrue(machine.joined.isEmpty)
    }

    func testJoiningAsksEveryOtherKindFromAStrangerForItsHello() throws {
        for kind in MessageKind.allCases where kind != .hello {
            let actions = try feed(sample(kind), from: stranger)
            XCTAssertEqual(rejections(actions), ["\(kind.rawValue) before hello (asked for its hello)"])
            XCTAssertEqual(replies(actions), [WireErrorMessage.helloFirst.message], "\(kind)")
        }
    }

    func testJoiningRefusesEverythingButHeartbeatsFromAMember() throws {
        try feed(hello(), from: a)
        for kind in MessageKind.allCases where kind != .heartbeat {
            XCTAssertEqual(rejections(try feed(sample(kind), from: a)), ["unexpected \(kind.rawValue) while waiting for workers"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: a).isEmpty)
    }

    func testTheJoinTimesOutOrElasticallySettles() throws {
        XCTAssertTrue(machine.handle(.tick, now: now + 59).isEmpty)
        XCTAssertEqual(failure(machine.handle(.tick, now: now + 61)), "only 0 of 2 workers joined within 60 s")
        machine = makeMachine()
        machine.beginJoin(now: now + 100)   // the shards' setup took 100 s: not counted
        XCTAssertTrue(machine.handle(.tick, now: now + 159).isEmpty)
        XCTAssertEqual(failure(machine.handle(.tick, now: now + 161)), "only 0 of 2 workers joined within 60 s")
        machine = makeMachine(minWorkers: 1)
        try feed(hello(), from: a)
        XCTAssertFalse(joinCompletes(machine.handle(.tick, now: now + 4)))
        let settled = machine.handle(.tick, now: now + 5)
        XCTAssertTrue(joinCompletes(settled))
        XCTAssertEqual(logs(settled), ["starting with 1 of 2 worker(s) (at least 1 required); the others join at a step boundary"])
    }

    func testAWorkerThatLeavesWhileJoiningIsForgotten() throws {
        try feed(hello(), from: a)
        XCTAssertEqual(logs(machine.handle(.peerGone(a), now: now)).count, 1)
        XCTAssertTrue(machine.joined.isEmpty)
    }

    // MARK: Assigning

    func testWhileAssigningPushesAreHeldForTheGatherAndErrorsLoseTheWorker() throws {
        try assigned()
        XCTAssertTrue(try feed(push(begin: 0, end: 2), from: a).isEmpty)
        XCTAssertEqual(machine.held.count, 1, "a push that overtook the shards' hello reports is kept")
        XCTAssertEqual(lost(try feed(sample(.error), from: b)), "worker 1 (host \(ProcessInfo.processInfo.hostName), pid \(getpid())) failed at step 1: out of memory")
        for kind in MessageKind.allCases where ![.heartbeat, .gradientPush, .error, .hello].contains(kind) {
            XCTAssertEqual(rejections(try feed(sample(kind), from: a)), ["unexpected \(kind.rawValue) during step 1"])
        }
    }

    func testANewAssignmentDropsTheHeldPushes() throws {
        try assigned()
        try feed(push(begin: 0, end: 2), from: a)
        machine.assign(machine.workers, step: 0, now: now)
        XCTAssertTrue(machine.held.isEmpty, "the step is computed again")
    }

    // MARK: Gathering

    func testGatheringCompletesEachWorkersPush() throws {
        try gathering()
        XCTAssertTrue(completes(try feed(push(begin: 0, end: 2), from: a)))
        XCTAssertTrue(completes(try feed(push(begin: 2, end: 4), from: b)))
        XCTAssertTrue(machine.workers.allSatisfy(\.isComplete))
    }

    func testGatheringRefusesForeignStaleAndMalformedPushes() throws {
        try gathering()
        XCTAssertEqual(rejections(try feed(push(begin: 2, end: 4), from: a)), ["gradient for chunks 2..<4, which this worker does not hold"])
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2, claimed: (1, 0)), from: a)), ["gradient for chunks 1..<0, which this worker does not hold"])
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2, step: 1), from: a)), ["gradient for future step 2, expected step 1"])
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2, tokens: 3), from: a)), ["gradient over 3 tokens, expected 32"])
        XCTAssertTrue(completes(try feed(push(begin: 0, end: 2), from: a)))
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2), from: a)), ["duplicate gradient for step 1"])
    }

    func testGatheringRefusesEveryOtherKindAndLosesAFailedWorker() throws {
        try gathering(step: 3)
        for kind in MessageKind.allCases where ![.heartbeat, .gradientPush, .error].contains(kind) {
            XCTAssertEqual(rejections(try feed(sample(kind), from: a)), ["unexpected \(kind.rawValue) during step 4"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: a).isEmpty)
        XCTAssertTrue(lost(try feed(sample(.error), from: a))!.hasSuffix("failed at step 4: out of memory"))
        XCTAssertTrue(lost(machine.handle(.peerGone(b), now: now))!.hasSuffix("is gone (connection closed) at step 4"))
    }

    func testSilentHungAndSlowWorkersWhileGathering() throws {
        try gathering()
        XCTAssertTrue(machine.handle(.tick, now: now + 9).isEmpty)
        now += 5
        try feed(sample(.heartbeat), from: a)
        let silent = lost(machine.handle(.tick, now: now + 5.5))
        XCTAssertTrue(silent?.hasPrefix("worker 1 ") == true && silent?.hasSuffix("stopped answering at step 1 (no message for 10 s)") == true,
                      "b said nothing for the heartbeat timeout: \(silent ?? "nothing")")
    }

    func testASlowWorkerIsNamedOnceAndAHungOneIsLost() throws {
        try gathering()
        now += 11
        try feed(sample(.heartbeat), from: a)
        try feed(sample(.heartbeat), from: b)
        let slow = logs(machine.handle(.tick, now: now))
        XCTAssertEqual(slow.count, 2, "each slow worker is named once per step")
        XCTAssertTrue(slow[0].hasSuffix("is slow: no gradient for step 1 after 11 s, but its heartbeats arrive"), slow[0])
        XCTAssertTrue(machine.handle(.tick, now: now).isEmpty)
        now += 30
        try feed(sample(.heartbeat), from: a)
        try feed(sample(.heartbeat), from: b)
        XCTAssertTrue(lost(machine.handle(.tick, now: now))!.contains("made no progress on step 1 for 41 s"), "past 4 heartbeat timeouts")
    }

    func testAStrangersHelloIsRefusedUnlessTheJobIsElastic() throws {
        try gathering()
        let refused = try feed(hello(), from: stranger)
        XCTAssertEqual(replies(refused), ["this job already has its 2 workers"])
        XCTAssertEqual(rejections(refused), ["hello from a process that is not a worker of this job"])
        let other = try feed(sample(.gradientPush), from: stranger)
        XCTAssertEqual(replies(other), [WireErrorMessage.helloFirst.message], "a worker of this run from before a restart")
        machine = makeMachine(minWorkers: 1)
        try gathering()
        let joins = try feed(hello(), from: stranger)
        XCTAssertTrue(logs(joins)[0].contains("joins the running job at step 2 (3 worker(s))"))
        XCTAssertTrue(try feed(sample(.heartbeat), from: stranger).isEmpty, "a joined worker waiting for its first step keeps its place")
    }

    // MARK: Between steps

    /// The held-back-push case of the sharded runs: a push for step s+1 while the coordinator
    /// evaluates or checkpoints step s is kept and taken first by the next gather.
    func testAPushOfTheNextStepWhileEvaluatingIsKeptForItsGather() throws {
        machine = makeMachine(pushesMayRunAhead: true)
        try gathering()
        try feed(push(begin: 0, end: 2), from: a)
        try feed(push(begin: 2, end: 4), from: b)
        _ = machine.stepGathered(0, now: now)
        XCTAssertTrue(try feed(push(begin: 0, end: 2, step: 1), from: a).isEmpty)
        XCTAssertEqual(machine.held.count, 1)
        for peer in machine.workers { peer.pushes.forEach { $0.expect(step: 1) } }
        machine.gather(step: 1, now: now)
        let (peer, message) = try XCTUnwrap(machine.takeHeld())
        XCTAssertTrue(completes(machine.handle(.received(peer, message), now: now)))
    }

    func testBetweenStepsWithoutShardsAPushIsRefusedAndAnErrorEndsTheRun() throws {
        try gathering()
        _ = machine.stepGathered(0, now: now)
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2, step: 1), from: a)), ["unexpected gradient_push between steps"])
        for kind in MessageKind.allCases where ![.heartbeat, .gradientPush, .error].contains(kind) {
            XCTAssertEqual(rejections(try feed(sample(kind), from: a)), ["unexpected \(kind.rawValue) between steps"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: a).isEmpty)
        XCTAssertTrue(failure(try feed(sample(.error), from: b))!.hasSuffix("failed: out of memory"))
    }

    func testHeldPushesAreBounded() throws {
        machine = makeMachine(pushesMayRunAhead: true)
        try gathering()
        _ = machine.stepGathered(0, now: now)
        for _ in 0..<machine.maximumHeld { try feed(push(begin: 0, end: 2, step: 1), from: a) }
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2, step: 1), from: a)), ["unexpected gradient_push between steps"])
        XCTAssertEqual(machine.held.count, machine.maximumHeld)
    }

    // MARK: Re-issued nodes (--balance on)

    func testAReissuedNodeFromItsHelperCompletesTheOwnersPushAndTheOwnersCopyIsDroppedQuietly() throws {
        try gathering()
        XCTAssertTrue(completes(try feed(push(begin: 0, end: 2), from: a)))
        machine.reissue(2..<4, of: b, to: a)
        XCTAssertTrue(machine.isBusy(a))
        let copy = try feed(push(begin: 2, end: 4), from: a)
        XCTAssertTrue(copy.contains { if case .pushComplete(let p) = $0 { return p == b } else { return false } })
        XCTAssertTrue(try feed(push(begin: 2, end: 4), from: b).isEmpty, "the owner's later copy is dropped, not refused")
        XCTAssertEqual(rejections(try feed(push(begin: 2, end: 4), from: stranger)).count, 1, "a stranger's copy is still refused")
        XCTAssertEqual(machine.stepGathered(0, now: now + 1).map(\.identity), [], "b's own copy came within the step: it owes nothing")
    }

    func testAPushForAnotherWorkersNodeIsRefusedUnlessItWasReissuedToTheSender() throws {
        try gathering()
        XCTAssertEqual(rejections(try feed(push(begin: 2, end: 4), from: a)), ["gradient for chunks 2..<4, which this worker does not hold"])
        machine.reissue(2..<4, of: b, to: a)
        XCTAssertEqual(rejections(try feed(push(begin: 0, end: 2), from: b)), ["gradient for chunks 0..<2, which this worker does not hold"],
                       "a re-issue gives the helper the owner's node, not the owner the helper's")
        XCTAssertEqual(rejections(try feed(push(begin: 2, end: 4), from: stranger)), ["gradient_push from a process that is not a worker of this job"])
    }

    func testAnOwnerThatFellBehindHasItsLatePushDroppedAndItsRealSpeedReported() throws {
        try gathering()
        try feed(push(begin: 0, end: 2), from: a)
        machine.reissue(2..<4, of: b, to: a)
        try feed(push(begin: 2, end: 4), from: a)
        let behind = machine.stepGathered(0, now: now + 2)
        XCTAssertEqual(behind.map(\.identity), [b])
        XCTAssertEqual(behind.first?.secondsPerChunk, 1, "2 s for 2 chunks: a lower bound")
        XCTAssertTrue(machine.isBehind(b))
        XCTAssertFalse(machine.isBehind(a), "the helper's copy won: it owes nothing")
        for peer in machine.workers { peer.pushes.forEach { $0.expect(step: 1) } }
        machine.gather(step: 1, now: now)
        // b's push of step 0 arrives during step 1: no rejection; its compute (0.5 s) per chunk.
        let late = try feed(push(begin: 2, end: 4, step: 0), from: b)
        XCTAssertTrue(rejections(late).isEmpty)
        XCTAssertTrue(late.contains { if case .lateTiming(let p, let perChunk) = $0 { return p == b && perChunk == 0.25 } else { return false } })
        XCTAssertFalse(machine.isBehind(b))
        XCTAssertEqual(rejections(try feed(push(begin: 2, end: 4, step: 0), from: b)), ["stale gradient for step 1, expected step 2"],
                       "once caught up, an old push is an ordinary rejection again")
    }
}
