import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// A node of another worker's block re-issued to this one (`Reissue`, `--balance on`): taken
/// after this worker pushed the step, computed with that step's weights from the state the
/// message brings, pushed in the owner's parts with bits equal to the owner's own push; one
/// for an older step is dropped; one that is not a node of the tree ends the worker.
final class WorkerReissueTests: WorkerMachineTestCase {
    private func run(_ job: ComputeJob, startedAt: Double) -> [ClientAction] {
        job.run { _ in }
        now = startedAt + 0.25
        return handle(.computeFinished(startedAt: startedAt))
    }

    /// Rank 0 (chunks 0..<2) computed and pushed step 1; its weights are still in.
    private func pushedStepOne() throws -> WorkerAssignment {
        let a = try working()
        _ = run(try XCTUnwrap(job(try feed(weights(step: 0)))), startedAt: now)
        handle(.gradientSent)
        XCTAssertEqual(state, "working")
        return a
    }

    private func reissue(step: UInt64 = 0, chunks: Range<UInt32> = 2..<4) -> Message {
        let valid = !chunks.isEmpty && chunks.upperBound <= UInt32(plan.chunkCount)
        let streams = valid ? plan.streams(ofChunks: Int(chunks.lowerBound)..<Int(chunks.upperBound)) : 0..<2
        let state = CarriedState(model: plan.model, streams: streams.count)
        return .reissue(Reissue(step: step, chunkBegin: chunks.lowerBound, chunkEnd: chunks.upperBound,
                                state: state.wireTensors(streams: 0..<streams.count)))
    }

    func testAReissuedNodeIsComputedWithTheStepsWeightsAndPushedWithTheOwnersBits() throws {
        let a = try pushedStepOne()
        let copyJob = try XCTUnwrap(job(try feed(reissue())))
        XCTAssertEqual(state, "computingReissue")
        XCTAssertTrue(copyJob.assignment === a)
        let pushes = coordinatorPushes(run(copyJob, startedAt: now))
        XCTAssertEqual(state, "working")
        XCTAssertEqual(machine.heartbeat, Heartbeat(rank: 0, step: 1), "its own next step is still awaited")
        XCTAssertEqual(pushes.map(\.chunks), [2..<4, 2..<4])
        XCTAssertEqual(pushes.map(\.part), [0, 1])
        XCTAssertEqual(pushes.map(\.parts), [2, 2])
        XCTAssertEqual(pushes.map(\.step), [0, 0])

        // The owner, rank 1 with chunks 2..<4, computing step 1 itself with the same weights.
        let ownerMachine = makeMachine()
        machine = ownerMachine
        handle(.tick)
        try feed(.welcome(welcome(rank: 1, streams: 4..<8)))
        let ownerJob = try XCTUnwrap(job(try feed(weights(step: 0))))
        let own = coordinatorPushes(run(ownerJob, startedAt: now))
        let owner = try XCTUnwrap(own.last), copy = try XCTUnwrap(pushes.last)
        XCTAssertEqual(copy.gradient.map(\.bitPattern), owner.gradient.map(\.bitPattern), "the re-issued copy's gradient differs from the owner's")
        XCTAssertEqual(copy.lossSum.bitPattern, owner.lossSum.bitPattern)
        XCTAssertEqual(copy.tokenCount, owner.tokenCount)
        XCTAssertEqual(copy.state, owner.state, "the carried state after the step")
    }

    /// With shards: the copy goes to every shard in the owner's pieces (every element once) and
    /// the coordinator gets only the node's loss, tokens and state; a re-issue that comes once
    /// some shard's weights of the next step are in is dropped (the step is over, and the
    /// weights are no longer one step's).
    func testWithShardsACopyGoesToEveryShardAndNotOnceTheNextWeightsArrive() throws {
        _ = try working(shards: 2)
        let ranges = SlabPartition(layout: plan.layout, shards: 2).shards
        var started: ComputeJob?
        for (k, range) in ranges.enumerated() { started = job(try feed(slabWeights(step: 0, range: range), from: .shard(k))) ?? started }
        _ = run(try XCTUnwrap(started), startedAt: now)
        handle(.gradientSent)
        let actions = run(try XCTUnwrap(job(try feed(reissue()))), startedAt: now)
        let toShards = shardPushes(actions)
        XCTAssertEqual(Set(toShards.map(\.shard)), [0, 1])
        XCTAssertTrue(toShards.allSatisfy { $0.push.chunks == 2..<4 && $0.push.step == 0 })
        XCTAssertEqual(toShards.map(\.push.values.count).reduce(0, +), plan.layout.count)
        let toCoordinator = coordinatorPushes(actions)
        XCTAssertEqual(toCoordinator.map(\.chunks), [2..<4])
        XCTAssertEqual(toCoordinator.first?.slices, 0..<0, "the gradient went to the shards")
        XCTAssertEqual(toCoordinator.first?.state.isEmpty, false)
        handle(.gradientSent)
        try feed(slabWeights(step: 1, range: ranges[0]), from: .shard(0))
        XCTAssertNil(job(try feed(reissue())))
        XCTAssertEqual(state, "working")
    }

    func testAReissueForAnOlderStepOrBeforeThisWorkerPushedIsDropped() throws {
        _ = try working()
        XCTAssertEqual(logs(try feed(reissue())), ["worker 0: dropped the reissue of chunks 2..<4 for step 1 (at step 1)"],
                       "before its own push of the step, the weights may not be the step's")
        _ = try pushedStepOne()
        XCTAssertNil(job(try feed(reissue(step: 5))))
        XCTAssertEqual(state, "working")
    }

    func testAReissueThatIsNotOneNodeOfTheTreeEndsTheWorker() throws {
        _ = try pushedStepOne()
        for chunks in [1..<3, 1..<4 as Range<UInt32>, 3..<9, 2..<2] {
            machine = makeMachine()
            _ = try pushedStepOne()
            let error = try XCTUnwrap(failure(try feed(reissue(chunks: chunks))), "chunks \(chunks)")
            XCTAssertTrue("\(error)".contains("not one node of the reduction tree"), "\(error)")
        }
    }
}
