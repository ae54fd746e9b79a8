import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// The parameter shard's protocol with no sockets, threads or sleeps: events are fed to a
/// `ShardMachine` and its actions read back. Every message kind is tried in every state
/// (awaiting setup; serving: waiting for hellos, gathering, summed) from the coordinator, a
/// joined worker and a stranger, and is either taken or refused with its reason.
final class ShardMachineTests: XCTestCase {
    let token = "shard-machine-token"
    let tickets = ["ticket-0", "ticket-1"]
    let coordinator: PeerIdentity = Array("coordinator".utf8)
    let w0: PeerIdentity = Array("w0".utf8), w1: PeerIdentity = Array("w1".utf8)
    let stranger: PeerIdentity = Array("stranger".utf8)
    var plan: RunPlan!
    var machine: ShardMachine!
    var now = 100.0

    override func setUpWithError() throws {
        plan = try RunPlan(config: ClusterFixtures.tinyConfig(steps: 5), corpus: ClusterFixtures.corpus)
        var options = ShardOptions()
        options.joinToken = token
        options.heartbeatTimeout = 10
        options.reconnectTimeout = 20
        machine = ShardMachine(options: options)
    }

    // MARK: Feeding

    /// Encodes and decodes `message` as the driver would, and feeds it from `peer`.
    @discardableResult
    func feed(_ message: Message, from peer: PeerIdentity) throws -> [ServerAction] {
        try WireCodec.encode(message).withUnsafeBytes { bytes in
            machine.handle(.received(peer, try WireCodec.decode(bytes, limits: .standard)), now: now)
        }
    }

    var setupMessage: Message {
        let update = ParameterUpdate(layout: plan.layout, optimizer: plan.config.optimizer, schedule: plan.config.schedule,
                                     clip: plan.config.clip, initial: ParameterInitializer.initialize(plan.layout, seed: 1))
        return .shardSetup(ShardSetup(
            runConfig: plan.config.canonicalJSON(), shard: 0, shardCount: 1, step: 0, workerCount: 2,
            parameters: WireTensor(name: "slab", shape: [plan.layout.count], values: Array(update.parameters)),
            optimizerState: update.optimizer.stateBuffers.map { WireTensor(name: $0.name, shape: [$0.values.count], values: $0.values) },
            optimizerSteps: 0, joinToken: token, vocabularySize: UInt32(plan.model.vocabularySize), labelCount: 0))
    }

    func hello(rank: Int, ticket: String? = nil, token: String? = nil) -> Message {
        let corpus = ClusterFixtures.corpus
        return .hello(Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest, host: "h", pid: 1, threads: 1,
                            joinToken: token ?? self.token, rank: UInt32(rank), rankTicket: ticket ?? tickets[rank]))
    }

    /// The pieces of node `begin..<end`'s gradient, every value `value`, for `step`.
    func pushes(begin: UInt32, end: UInt32, step: UInt64 = 0, value: Float = 0.5) -> [Message] {
        let pieces = SlabPartition.pushPieces(of: 0..<plan.layout.count, earlyFrom: plan.config.earlyElements(of: plan.layout))
        return pieces.enumerated().map { part, piece in
            .gradientPush(GradientPush(step: step, tokenCount: 0, lossSum: 0,
                                       tensors: [WireTensor(name: "slab", shape: [piece.count], values: Array(repeating: value, count: piece.count))],
                                       computeSeconds: 0, communicateSeconds: 0, part: UInt32(part), parts: UInt32(pieces.count),
                                       chunkBegin: begin, chunkEnd: end, offset: UInt64(piece.lowerBound)))
        }
    }

    /// One representative message of every kind (pushes: a valid node of worker 0's block).
    func sample(_ kind: MessageKind) -> Message {
        switch kind {
        case .hello: return hello(rank: 0)
        case .welcome: return .welcome(Welcome(rank: 0, workerCount: 1, runConfig: "{}", streamBegin: 0, streamEnd: 2, step: 0, state: []))
        case .weights: return .weights(Weights(step: 0, resetState: false, tensors: []))
        case .gradientPush: return pushes(begin: 0, end: 2)[0]
        case .heartbeat: return .heartbeat(Heartbeat(rank: 0, step: 0))
        case .shutdown: return .shutdown(Shutdown(reason: "over"))
        case .error: return .error(WireErrorMessage(message: "broken"))
        case .shardSetup: return setupMessage
        case .shardCommand: return .shardCommand(ShardCommand(kind: .sendState, step: 0))
        case .shardReport: return .shardReport(ShardReport(kind: .ready, step: 0))
        case .reissue: return .reissue(Reissue(step: 0, chunkBegin: 0, chunkEnd: 2, state: []))
        }
    }

    // MARK: Reading actions

    func rejections(_ actions: [ServerAction]) -> [String] {
        actions.compactMap { if case .reject(_, let reason) = $0 { return reason } else { return nil } }
    }

    func sent(_ actions: [ServerAction]) -> [(Message, PeerIdentity)] {
        actions.compactMap { if case .send(let m, let to, _) = $0 { return (m, to) } else { return nil } }
    }

    func reports(_ actions: [ServerAction]) -> [ShardReport.Kind] {
        sent(actions).compactMap { if case .shardReport(let r) = $0.0 { return r.kind } else { return nil } }
    }

    func failure(_ actions: [ServerAction]) -> Error? {
        actions.lazy.compactMap { if case .fail(let e) = $0 { return e } else { return nil } }.first
    }

    func broadcastPeers(_ actions: [ServerAction]) -> [PeerIdentity]? {
        actions.lazy.compactMap { if case .broadcastSlab(_, _, _, _, let to) = $0 { return to } else { return nil } }.first
    }

    func finishes(_ actions: [ServerAction]) -> Bool {
        actions.contains { if case .finish = $0 { return true } else { return false } }
    }

    // MARK: Getting to each state

    func setUpRun() throws {
        XCTAssertEqual(reports(try feed(setupMessage, from: coordinator)), [.ready])
        XCTAssertEqual(reports(try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets)),
                                        from: coordinator)), [.ready])
    }

    /// Both workers said hello: the weights of step 1 went out to both, in rank order.
    func gathering() throws {
        try setUpRun()
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 0), from: w0)))
        XCTAssertEqual(broadcastPeers(try feed(hello(rank: 1), from: w1)), [w0, w1])
    }

    /// Every node of step 1 is in: the block norms went to the coordinator.
    func summed() throws {
        try gathering()
        for push in pushes(begin: 0, end: 2) { XCTAssertEqual(reports(try feed(push, from: w0)), []) }
        let last = try pushes(begin: 2, end: 4).map { try feed($0, from: w1) }.last!
        XCTAssertEqual(reports(last), [.blockSquares])
    }

    // MARK: Awaiting setup

    func testBeforeASetupEveryMessageButASetupIsRefused() throws {
        for kind in MessageKind.allCases where kind != .shardSetup {
            let actions = try feed(sample(kind), from: stranger)
            XCTAssertEqual(rejections(actions), ["\(kind.rawValue) from a peer that is not part of this shard's run"], "\(kind)")
            XCTAssertTrue(sent(actions).isEmpty && failure(actions) == nil, "\(kind)")
        }
        XCTAssertNil(machine.run)
        XCTAssertTrue(machine.watched.isEmpty && machine.heartbeat == nil, "no coordinator yet")
    }

    func testASetupWithoutTheTokenOrWithGarbageIsRefusedAndTheShardWaits() throws {
        guard case .shardSetup(var setup) = setupMessage else { return XCTFail() }
        setup.joinToken = "wrong"
        XCTAssertEqual(rejections(try feed(.shardSetup(setup), from: stranger)), ["shard setup without this job's join token"])
        setup.joinToken = token
        setup.runConfig = "{not json"
        XCTAssertTrue(rejections(try feed(.shardSetup(setup), from: stranger))[0].hasPrefix("shard setup with an unreadable run config"))
        setup.runConfig = plan.config.canonicalJSON()
        setup.vocabularySize = 0
        XCTAssertTrue(rejections(try feed(.shardSetup(setup), from: stranger))[0].hasPrefix("shard setup with vocabulary size 0"))
        setup.vocabularySize = UInt32(plan.model.vocabularySize)
        setup.shard = 3
        XCTAssertEqual(rejections(try feed(.shardSetup(setup), from: stranger)), ["shard setup for shard 3 of 1"])
        setup.shard = 0
        setup.parameters = WireTensor(name: "slab", shape: [plan.layout.count - 1], values: Array(setup.parameters.values.dropLast()))
        XCTAssertTrue(rejections(try feed(.shardSetup(setup), from: stranger))[0].hasPrefix("shard setup with \(plan.layout.count - 1) weights"))
        XCTAssertNil(machine.run)
    }

    func testASetupMakesTheRunBoundsMessagesAndWatchesTheCoordinator() throws {
        let actions = try feed(setupMessage, from: coordinator)
        XCTAssertEqual(reports(actions), [.ready])
        XCTAssertTrue(actions.contains { if case .limit(let l) = $0 { return l.maxMessageBytes < DecodeLimits.standard.maxMessageBytes } else { return false } })
        XCTAssertEqual(machine.run?.update.range, 0..<plan.layout.count)
        XCTAssertEqual(machine.watched.map(\.peer), [coordinator])
        XCTAssertEqual(machine.watched.map(\.limit), [30], "heartbeat timeout + reconnect timeout")
        XCTAssertEqual(machine.heartbeat?.to, coordinator)
        XCTAssertEqual(machine.name(of: coordinator), "the coordinator")
    }

    // MARK: Serving: from the coordinator

    func testEveryKindFromTheCoordinatorWhileServing() throws {
        try gathering()
        for kind in [MessageKind.hello, .welcome, .weights, .gradientPush, .shardReport] {
            XCTAssertEqual(rejections(try feed(sample(kind), from: coordinator)), ["unexpected \(kind.rawValue) from the coordinator"])
        }
        XCTAssertTrue(try feed(sample(.heartbeat), from: coordinator).isEmpty)
        let state = try feed(sample(.shardCommand), from: coordinator)
        guard case .shardReport(let report)? = sent(state).first?.0 else { return XCTFail("no state report") }
        XCTAssertEqual(report.kind, .state)
        XCTAssertEqual(report.parameters?.values.count, plan.layout.count)
        guard case ClusterError.refused(let m)? = failure(try feed(sample(.error), from: coordinator)) else { return XCTFail() }
        XCTAssertEqual(m, "broken")
        XCTAssertTrue(finishes(try feed(sample(.shutdown), from: coordinator)))
    }

    func testAnApplyBeforeEveryNodeIsInEndsTheShard() throws {
        try gathering()
        let actions = try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1)), from: coordinator)
        XCTAssertEqual("\(failure(actions)!)", "apply for step 1 while this shard holds step 1")
    }

    func testApplyChangesTheWeightsAndBroadcastsTheNextStep() throws {
        try summed()
        let before = Array(machine.run!.update.parameters)
        let actions = try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)), from: coordinator)
        XCTAssertEqual(broadcastPeers(actions), [w0, w1])
        XCTAssertNotEqual(Array(machine.run!.update.parameters), before)
        XCTAssertEqual(machine.run?.step, 1)
        // The last step: applied, nothing broadcast.
        for push in pushes(begin: 0, end: 2, step: 1) { try feed(push, from: w0) }
        for push in pushes(begin: 2, end: 4, step: 1) { try feed(push, from: w1) }
        XCTAssertNil(broadcastPeers(try feed(.shardCommand(ShardCommand(kind: .apply, step: 1, norm: 1)), from: coordinator)))
    }

    func testABroadcastCommandSendsTheStepAgainAndForgetsItsSums() throws {
        try summed()
        let actions = try feed(.shardCommand(ShardCommand(kind: .broadcast, step: 0)), from: coordinator)
        XCTAssertEqual(broadcastPeers(actions), [w0, w1])
        XCTAssertNil(machine.run?.summed)
    }

    func testAReassignForgetsTheWorkersAndWaitsForTheirHellos() throws {
        try summed()
        let actions = try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 1, rankTickets: ["solo"])), from: coordinator)
        XCTAssertEqual(reports(actions), [.ready])
        XCTAssertTrue(machine.workers.isEmpty)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0)),
                       ["gradient_push from a peer that is not part of this shard's run"])
        XCTAssertEqual(broadcastPeers(try feed(hello(rank: 0, ticket: "solo"), from: w1)), [w1])
        let bad = try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: ["one"])), from: coordinator)
        XCTAssertEqual("\(failure(bad)!)", "reassign to 2 workers with 1 rank tickets")
    }

    /// The test-cluster join failure ("shard 0 sent no gradient norm for step 425"): the shards
    /// broadcast step 1 to the old assignment, then a reassign; a worker's new welcome overtook
    /// that broadcast (another connection), so it computed step 1 from it and pushed before
    /// the shard's broadcast of the new assignment. The weights of step 1 are the same: the
    /// push is taken, and the broadcast, once every rank said hello, skips that rank (it
    /// already moved on to step 2). Without an earlier broadcast of the step, such a push is
    /// still refused.
    func testAPushOfARankThatComputedTheStepFromTheLastBroadcastIsTaken() throws {
        try gathering()
        let next = ["next-0", "next-1"]
        XCTAssertEqual(reports(try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: next)),
                                        from: coordinator)), [.ready])
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 0, ticket: next[0]), from: w0)), "rank 1 has not said hello")
        for push in pushes(begin: 0, end: 2) { XCTAssertEqual(rejections(try feed(push, from: w0)), []) }
        XCTAssertEqual(machine.run?.sentTo, [0], "rank 0 holds the step's weights")
        XCTAssertEqual(broadcastPeers(try feed(hello(rank: 1, ticket: next[1]), from: w1)), [w1], "rank 0 has the weights")
        let last = try pushes(begin: 2, end: 4).map { try feed($0, from: w1) }.last!
        XCTAssertEqual(reports(last), [.blockSquares])
        // Applied: step 2's broadcast goes to both again.
        XCTAssertEqual(broadcastPeers(try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)),
                                               from: coordinator)), [w0, w1])
        XCTAssertEqual(machine.run?.sentTo, [0, 1])
        // After a setup that never broadcast the step, a rank has nothing to compute it from.
        XCTAssertEqual(reports(try feed(setupMessage, from: coordinator)), [.ready])
        XCTAssertEqual(reports(try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets)),
                                        from: coordinator)), [.ready])
        _ = try feed(hello(rank: 0), from: w0)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0)), ["gradient for step 1 before this shard sent its weights"])
    }

    /// Issue 21 item 8: the shard's connection cap follows its run: the setup's workers plus
    /// the coordinator, and each reassign's.
    func testASetupAndAReassignNameTheMembersTheConnectionCapAdmits() throws {
        func members(_ actions: [ServerAction]) -> [Int] {
            actions.compactMap { if case .members(let n) = $0 { return n } else { return nil } }
        }
        XCTAssertEqual(members(try feed(setupMessage, from: coordinator)), [3], "2 workers + the coordinator")
        let three = ShardCommand(kind: .reassign, step: 0, workerCount: 3, rankTickets: ["a", "b", "c"])
        XCTAssertEqual(members(try feed(.shardCommand(three), from: coordinator)), [4])
        XCTAssertEqual(members(try feed(hello(rank: 0), from: w0)), [], "nothing else changes the cap")
    }

    /// `--balance` resizes blocks: a reassign with block sizes 3 and 1 (of 4 chunks) lets
    /// rank 0 push the nodes of chunks 0..<3 (0..<2 and 2..<3) and rank 1 chunk 3 only; sizes
    /// that do not cover the chunks end the shard.
    func testAReassignWithBlockSizesAllowsEachRankTheNodesOfItsBlock() throws {
        try summed()
        let resized = ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets, blockSizes: [3, 1])
        XCTAssertEqual(reports(try feed(.shardCommand(resized), from: coordinator)), [.ready])
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 0), from: w0)))
        XCTAssertEqual(broadcastPeers(try feed(hello(rank: 1), from: w1)), [w0, w1])
        XCTAssertEqual(rejections(try feed(pushes(begin: 2, end: 4)[0], from: w1)), ["gradient for chunks 2..<4, which this worker does not hold"],
                       "the equal split's block of rank 1 is no longer its own")
        for push in pushes(begin: 0, end: 2) + pushes(begin: 2, end: 3) { XCTAssertEqual(rejections(try feed(push, from: w0)), []) }
        let last = try pushes(begin: 3, end: 4).map { try feed($0, from: w1) }.last!
        XCTAssertEqual(reports(last), [.blockSquares])
        let bad = ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets, blockSizes: [2, 1])
        XCTAssertEqual("\(failure(try feed(.shardCommand(bad), from: coordinator))!)", "reassign with blocks of [2, 1] chunks for 2 workers over 4 chunks")
    }

    func testASetupFromANewCoordinatorStartsANewRun() throws {
        try gathering()
        let restarted: PeerIdentity = Array("coordinator-2".utf8)
        XCTAssertEqual(reports(try feed(setupMessage, from: restarted)), [.ready])
        XCTAssertEqual(machine.watched.map(\.peer), [restarted])
        XCTAssertTrue(machine.workers.isEmpty)
        XCTAssertEqual(rejections(try feed(sample(.heartbeat), from: coordinator)),
                       ["heartbeat from a peer that is not part of this shard's run"])
    }

    // MARK: Serving: from workers and strangers

    func testEveryKindFromAJoinedWorker() throws {
        try gathering()
        for kind in MessageKind.allCases where ![.gradientPush, .heartbeat, .shardSetup, .hello].contains(kind) {
            XCTAssertEqual(rejections(try feed(sample(kind), from: w0)), ["unexpected \(kind.rawValue) from worker 0"], "\(kind)")
        }
        // A worker welcomed again (it fell behind) says hello again, with its ticket.
        let again = try feed(sample(.hello), from: w0)
        XCTAssertEqual(rejections(again), [])
        XCTAssertEqual(reports(again), [], "nothing new for the coordinator")
        XCTAssertEqual(rejections(try feed(hello(rank: 0, ticket: "forged"), from: w0)), ["hello for rank 0 without that rank's ticket"])
        XCTAssertTrue(try feed(sample(.heartbeat), from: w0).isEmpty)
        XCTAssertTrue(try feed(sample(.gradientPush), from: w0).isEmpty, "a valid piece is taken quietly")
        guard case .shardSetup(var setup) = setupMessage else { return XCTFail() }
        setup.joinToken = "not the token"
        XCTAssertEqual(rejections(try feed(.shardSetup(setup), from: w0)), ["shard setup without this job's join token"])
        XCTAssertEqual(machine.name(of: w0), "worker 0")
    }

    func testEveryKindFromAStrangerWhileServing() throws {
        try gathering()
        for kind in MessageKind.allCases where ![.hello, .shardSetup].contains(kind) {
            XCTAssertEqual(rejections(try feed(sample(kind), from: stranger)), ["\(kind.rawValue) from a peer that is not part of this shard's run"])
        }
    }

    func testHellosWithoutTokenTicketOrRankAreRefused() throws {
        try setUpRun()
        let noToken = try feed(hello(rank: 0, token: ""), from: stranger)
        XCTAssertEqual(rejections(noToken), ["hello without this job's join token"])
        XCTAssertTrue(noToken.contains { if case .reply(.error(let e), _) = $0 { return e.message == "missing join token" } else { return false } },
                      "a stranger's refusal is a reply, never a blocking send")
        XCTAssertEqual(rejections(try feed(hello(rank: 0, token: "guess"), from: stranger)), ["hello without this job's join token"])
        XCTAssertEqual(rejections(try feed(hello(rank: 0, ticket: "forged"), from: stranger)), ["hello for rank 0 without that rank's ticket"])
        XCTAssertEqual(rejections(try feed(.hello({ guard case .hello(var h) = hello(rank: 0) else { fatalError() }; h.rank = 7; return h }()),
                                           from: stranger)), ["hello from rank 7 of a run of 2 worker(s)"])
        XCTAssertTrue(machine.workers.isEmpty)
        let joined = try feed(hello(rank: 0), from: w0)
        XCTAssertEqual(reports(joined), [.workerJoined])
    }

    func testForgedAndMisplacedPushesAreRefusedWithTheirReason() throws {
        try setUpRun()
        _ = try feed(hello(rank: 0), from: w0)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0)),
                       ["gradient for step 1 before this shard sent its weights"], "worker 1 has not said hello yet")
        _ = try feed(hello(rank: 1), from: w1)
        for (begin, end) in [(2, 1), (0, 4), (2, 4), (0, 1)] as [(UInt32, UInt32)] {
            XCTAssertEqual(rejections(try feed(pushes(begin: begin, end: end)[0], from: w0)),
                           ["gradient for chunks \(begin)..<\(end), which this worker does not hold"])
        }
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2, step: 1)[0], from: w0)), ["gradient for future step 2, expected step 1"])
        XCTAssertTrue(rejections(try feed(pushes(begin: 0, end: 2, value: .nan)[0], from: w0)) == ["gradient tensor slab holds values that are not finite"])
        try feed(pushes(begin: 0, end: 2)[0], from: w0)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0)), ["duplicate gradient part 1 of 2 for step 1"])
    }

    func testAfterEveryNodeIsInFurtherPushesAreDuplicates() throws {
        try summed()
        XCTAssertTrue(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0))[0].hasPrefix("duplicate gradient part"))
    }

    // MARK: Time, signals, lost peers

    func testASilentCoordinatorEndsTheShard() throws {
        try setUpRun()
        XCTAssertNil(failure(machine.handle(.silent(stranger, seconds: 99), now: now)), "only the coordinator is watched")
        let actions = machine.handle(.silent(coordinator, seconds: 31), now: now)
        XCTAssertEqual(failure(actions) as? ClusterError, .coordinatorLost(endpoint: "of this shard", seconds: 31))
    }

    func testAStopEndsAShardWithoutACoordinatorAtOnceAndOtherwiseAfterAHeartbeatTimeout() throws {
        let stopped = StopRequest.Stopped(reason: "SIGTERM", exitCode: 143)
        var alone = machine!
        XCTAssertEqual(failure(alone.handle(.stopRequested(stopped), now: now)) as? StopRequest.Stopped, stopped)
        try setUpRun()
        XCTAssertNil(failure(machine.handle(.stopRequested(stopped), now: now)), "serves the coordinator's last fetch")
        XCTAssertNil(failure(machine.handle(.tick, now: now + 10)))
        XCTAssertEqual(failure(machine.handle(.tick, now: now + 10.5)) as? StopRequest.Stopped, stopped)
    }

    func testAWorkerGoneDuringABroadcastIsDroppedAndNamed() throws {
        try gathering()
        let actions = machine.handle(.peerGone(w1), now: now)
        XCTAssertTrue(actions.contains { if case .log(let l) = $0 { return l.contains("worker 1 is gone or not reading") } else { return false } })
        XCTAssertEqual(machine.workers.keys.sorted(), [0])
        XCTAssertNil(failure(actions), "whether the run goes on is the coordinator's call")
    }
}
