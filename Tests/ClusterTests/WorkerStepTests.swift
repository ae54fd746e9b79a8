import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// A worker's steps with no sockets or threads: the weights of the awaited step (whole from
/// the coordinator, or a range from each shard) start a compute, which the test runs in line
/// (0.25 s of the test's clock); then the pushes: per tree node, the early part and the rest, to the coordinator
/// or to the shards that own each range. Wrong steps, weights that do not fit or are not
/// finite.
final class WorkerStepTests: WorkerMachineTestCase {
    /// Runs `job` here and feeds its early part and its end as the driver would.
    private func run(_ job: ComputeJob, startedAt: Double) -> (early: [ClientAction], final: [ClientAction]) {
        var handedOver: [Range<Int>] = []
        job.run { handedOver.append($0) }
        let early = handedOver.flatMap { handle(.earlyPartReady(slices: $0)) }
        now = startedAt + 0.25
        return (early, handle(.computeFinished(startedAt: startedAt)))
    }

    // MARK: Weights from the coordinator

    func testTheAwaitedWeightsStartTheComputeAndThePushesFollow() throws {
        let a = try working()
        now = 200
        let job = try XCTUnwrap(job(try feed(weights(step: 0))))
        XCTAssertTrue(job.assignment === a)
        XCTAssertEqual(a.parameters[3], 0.3, "the weights are in the assignment's buffer")
        let (early, final) = run(job, startedAt: 200)
        let earlyPushes = coordinatorPushes(early), finalPushes = coordinatorPushes(final)
        let top = try XCTUnwrap(a.engine.earlySlices)
        XCTAssertEqual(earlyPushes.map(\.slices), a.engine.nodes.map { _ in top })
        XCTAssertEqual(earlyPushes.map(\.part), a.engine.nodes.map { _ in 0 })
        XCTAssertEqual(earlyPushes.map(\.parts), a.engine.nodes.map { _ in 2 })
        XCTAssertEqual(finalPushes.map(\.chunks), a.engine.nodes)
        for (i, push) in finalPushes.enumerated() {
            XCTAssertEqual(push.slices, 0..<top.lowerBound)
            XCTAssertEqual(push.part, 1)
            XCTAssertEqual(push.tokenCount, UInt64(plan.streams(ofChunks: push.chunks).count * plan.config.window))
            XCTAssertEqual(push.lossSum, a.engine.nodeLoss[i])
            XCTAssertEqual(push.state.map(\.name), ["h", "c"])
            XCTAssertEqual(push.times.compute, 0.25, accuracy: 1e-9)
            XCTAssertEqual(push.gradient.baseAddress, UnsafePointer(a.engine.gradient(ofNode: i)), "encoded from the engine's buffer")
        }
        XCTAssertTrue(shardPushes(final).isEmpty)
        XCTAssertEqual(state, "working")
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 0, step: 1), "the next step is awaited")
        try assertPushesDecode(finalPushes + earlyPushes)
    }

    func testTheStepsTimesAreReportedWithTheNextPush() throws {
        let a = try working()
        now = 200
        var (_, final) = run(try XCTUnwrap(job(try feed(weights(step: 0)))), startedAt: 200.5)
        XCTAssertEqual(coordinatorPushes(final).first?.times.wait, 0, "the first step waited for nothing before it")
        now = 201
        handle(.gradientSent)
        now = 203
        (_, final) = run(try XCTUnwrap(job(try feed(weights(step: 1)))), startedAt: 203.25)
        let times = try XCTUnwrap(coordinatorPushes(final).first?.times)
        XCTAssertEqual(times.wait, 2, accuracy: 1e-9, "weights at 203, last push at 201")
        XCTAssertEqual(times.communicate, 0.5 + 0.25, accuracy: 1e-9, "the previous step: 0.5 s before compute, 0.25 s after")
        XCTAssertEqual(a.step, 2)
    }

    func testWeightsForAnotherStepAreRejected() throws {
        _ = try working()
        XCTAssertEqual(logs(try feed(weights(step: 2))), ["worker 0: rejected weights for step 3, expected step 1"])
        XCTAssertEqual(state, "working")
    }

    func testWeightsThatAreNotFiniteAreNeverComputedOn() throws {
        _ = try working()
        let actions = try feed(weights(step: 0) { $0 == 5 ? .nan : 0 })
        XCTAssertNil(job(actions))
        XCTAssertEqual("\(failure(actions)!)", "\(ClusterError.protocolViolation("weights for step 1 hold values that are not finite"))")
    }

    func testWeightsThatDoNotFitTheModelEndTheWorker() throws {
        _ = try working()
        let actions = try feed(.weights(Weights(step: 0, resetState: false, tensors: [WireTensor(name: "x", shape: [1], values: [0])])))
        XCTAssertTrue("\(failure(actions)!)".contains("weights for step 1 do not fit this model"))
    }

    func testAnEpochStartResetsTheCarriedState() throws {
        let a = try working()
        a.state.setValues("h", Array(repeating: 1, count: a.state.values("h").count))
        _ = try feed(weights(step: 0, resetState: true))
        XCTAssertTrue(a.state.values("h").allSatisfy { $0 == 0 })
    }

    // MARK: Weights from the shards

    func testAShardedWelcomeLinksEveryShardAndSaysHelloWithTheTicket() throws {
        handle(.tick)
        let actions = try feed(.welcome(welcome(shards: 2)))
        let links = actions.compactMap { if case .linkShards(let endpoints, _) = $0 { return endpoints } else { return nil } }
        XCTAssertEqual(links, [["tcp://shard0:6000", "tcp://shard1:6000"]])
        let hellos = actions.compactMap { action -> (Int, Hello)? in
            if case .sendToShard(let k, .hello(let hello)) = action { return (k, hello) } else { return nil }
        }
        XCTAssertEqual(hellos.map(\.0), [0, 1])
        XCTAssertEqual(hellos.map(\.1.rankTicket), ["ticket-0", "ticket-0"])
        XCTAssertEqual(logs(actions).last, "worker 0: 2 parameter shards")
    }

    func testShardedWeightsAreAssembledFromEveryShard() throws {
        let a = try working(shards: 2)
        let route = try XCTUnwrap(a.route as? WorkerShards)
        XCTAssertNil(job(try feed(slabWeights(step: 0, range: route.range(1)), from: .shard(1))), "one shard's range is not the weights")
        XCTAssertEqual(logs(try feed(slabWeights(step: 1, range: route.range(0)), from: .shard(0))),
                       ["worker 0: rejected weights for step 2, expected step 1"])
        let job = try XCTUnwrap(job(try feed(slabWeights(step: 0, range: route.range(0)), from: .shard(0))))
        XCTAssertEqual(Array(a.parameters), (0..<plan.layout.count).map { Float($0 % 5) })
        let (early, final) = run(job, startedAt: now)
        // Every element of every node's gradient leaves once, to the shard that owns it.
        for node in a.engine.nodes {
            let pieces = shardPushes(early + final).filter { $0.push.chunks == node }
            XCTAssertTrue(pieces.allSatisfy { route.range($0.shard).contains($0.push.offset) })
            let covered = pieces.map { $0.push.offset..<($0.push.offset + $0.push.values.count) }.sorted { $0.lowerBound < $1.lowerBound }
            XCTAssertEqual(covered.first?.lowerBound, 0)
            XCTAssertEqual(covered.last?.upperBound, plan.layout.count)
            XCTAssertTrue(zip(covered, covered.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        }
        XCTAssertFalse(shardPushes(early).isEmpty, "the top layer's pieces leave early")
        XCTAssertTrue(coordinatorPushes(early).isEmpty)
        XCTAssertEqual(coordinatorPushes(final).map(\.slices), a.engine.nodes.map { _ in 0..<0 }, "loss, tokens and state only")
        XCTAssertEqual(coordinatorPushes(final).map(\.parts), a.engine.nodes.map { _ in 1 })
    }

    func testAnyShardsEpochStartResetsTheState() throws {
        let a = try working(shards: 2)
        let route = try XCTUnwrap(a.route as? WorkerShards)
        a.state.setValues("h", Array(repeating: 1, count: a.state.values("h").count))
        try feed(slabWeights(step: 0, range: route.range(0), resetState: true), from: .shard(0))
        try feed(slabWeights(step: 0, range: route.range(1)), from: .shard(1))
        XCTAssertTrue(a.state.values("h").allSatisfy { $0 == 0 })
    }

    func testWeightsFromTheCoordinatorOfAShardedRunEndTheWorker() throws {
        _ = try working(shards: 2)
        XCTAssertEqual("\(failure(try feed(weights(step: 0)))!)", "\(ClusterError.protocolViolation("weights from the coordinator of a sharded run"))")
    }

    func testShardWeightsOutsideTheirRangeEndTheWorker() throws {
        let a = try working(shards: 2)
        let route = try XCTUnwrap(a.route as? WorkerShards)
        let actions = try feed(slabWeights(step: 0, range: route.range(0)), from: .shard(1))
        XCTAssertEqual("\(failure(actions)!)", "\(ClusterError.protocolViolation("weights from shard 1 start at element 0, its range is \(route.range(1))"))")
    }

    func testAWelcomeWithBrokenShardBoundsEndsTheWorker() throws {
        handle(.tick)
        var bad = welcome(shards: 2)
        bad.shardBounds[1] = UInt64(plan.layout.count + 1)
        XCTAssertTrue("\(failure(try feed(.welcome(bad)))!)".contains("welcome names 2 shards with bounds"))
    }

    // MARK: Helpers

    /// The pushes as the driver encodes them decode as gradient pushes of their node.
    private func assertPushesDecode(_ pushes: [CoordinatorPush]) throws {
        for push in pushes {
            var buffer = MessageBuffer()
            push.encode(into: &buffer)
            let decoded = try buffer.withUnsafeBytes { try WireCodec.decode($0, limits: DecodeLimits(plan: plan)) }
            guard case .gradientPush(let p) = decoded else { return XCTFail("\(decoded.kind)") }
            XCTAssertEqual(p.chunks, push.chunks)
            XCTAssertEqual(Int(p.part), push.part)
        }
    }
}
