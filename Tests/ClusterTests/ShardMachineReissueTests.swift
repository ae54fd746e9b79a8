import XCTest
@testable import Cluster
import Wire

/// Re-issue within a step at a shard (`--balance on`): the coordinator's `reissue` lets a
/// helper push another rank's node, the first copy of each piece counts and later copies are
/// dropped without a rejection, late work of an older step is dropped quietly, a rank held back
/// gets its weights only once released, whatever order its hello and the coordinator's commands
/// arrive in; every other push is refused as before.
/// Worker 0 holds node 0..<2, worker 1 node 2..<4; each node comes in two pieces.
extension ShardMachineTests {
    private func grant(_ begin: UInt32, _ end: UInt32, owner: UInt32, helper: UInt32, step: UInt64 = 0) throws -> [ServerAction] {
        try feed(.shardCommand(ShardCommand(kind: .reissue, step: step, chunkBegin: begin, chunkEnd: end, owner: owner, helper: helper)),
                 from: coordinator)
    }

    private func command(_ kind: ShardCommand.Kind, rank: UInt32, step: UInt64) throws -> [ServerAction] {
        try feed(.shardCommand(ShardCommand(kind: kind, step: step, owner: rank)), from: coordinator)
    }

    func testAGrantedHelpersPiecesCompleteTheNodeAndTheOwnersLaterCopyIsDroppedQuietly() throws {
        try gathering()
        XCTAssertEqual(reports(try grant(2, 4, owner: 1, helper: 0)), [.granted], "each grant is answered")
        let (own, copy, owners) = (pushes(begin: 0, end: 2), pushes(begin: 2, end: 4, value: 0.25), pushes(begin: 2, end: 4, value: 0.25))
        XCTAssertEqual(copy.count, 2, "the test wants a node in two pieces")
        for push in own { XCTAssertEqual(rejections(try feed(push, from: w0)), []) }
        // The owner's first piece, then the helper's copy of it (dropped) and its second piece.
        XCTAssertEqual(rejections(try feed(owners[0], from: w1)), [])
        XCTAssertTrue(try feed(copy[0], from: w0).isEmpty, "a piece another copy brought is dropped quietly")
        let completing = try feed(copy[1], from: w0)
        XCTAssertEqual(rejections(completing), [])
        XCTAssertEqual(reports(completing), [.blockSquares], "the helper's piece completed the step")
        XCTAssertTrue(try feed(owners[1], from: w1).isEmpty, "the owner's late piece is dropped quietly")
        XCTAssertTrue(try feed(copy[0], from: w0).isEmpty)
    }

    func testWithoutAGrantAnotherRanksNodeIsStillRefused() throws {
        try gathering()
        XCTAssertEqual(rejections(try feed(pushes(begin: 2, end: 4)[0], from: w0)), ["gradient for chunks 2..<4, which this worker does not hold"])
        _ = try grant(2, 4, owner: 1, helper: 0)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w1)), ["gradient for chunks 0..<2, which this worker does not hold"],
                       "the grant is for worker 0 to help, not for worker 1")
        // A duplicate of a node that was not re-issued is still one.
        try feed(pushes(begin: 0, end: 2)[0], from: w0)
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2)[0], from: w0)), ["duplicate gradient part 1 of 2 for step 1"])
        // The next step forgets the grant.
        for push in pushes(begin: 0, end: 2)[1...] + pushes(begin: 2, end: 4) { try feed(push, from: w0) }
        XCTAssertEqual(broadcastPeers(try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)), from: coordinator)), [w0, w1])
        XCTAssertEqual(rejections(try feed(pushes(begin: 2, end: 4, step: 1)[0], from: w0)), ["gradient for chunks 2..<4, which this worker does not hold"])
    }

    func testARankHeldBackGetsNoWeightsUntilReleasedAndItsLatePushesAreDropped() throws {
        try gathering()
        _ = try grant(2, 4, owner: 1, helper: 0)
        for push in pushes(begin: 0, end: 2) + pushes(begin: 2, end: 4) { try feed(push, from: w0) }
        XCTAssertTrue(try feed(.shardCommand(ShardCommand(kind: .holdBack, step: 0, owner: 1)), from: coordinator).isEmpty)
        let applied = try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)), from: coordinator)
        XCTAssertEqual(broadcastPeers(applied), [w0], "worker 1 fell behind: no weights for it")
        XCTAssertTrue(try feed(pushes(begin: 2, end: 4)[1], from: w1).isEmpty, "its late push of step 1 is dropped quietly")
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2, step: 1)[0], from: w1)), ["gradient for chunks 0..<2, which this worker does not hold"])
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 1), from: w1)), "a hello alone does not end the hold")
        let back = try command(.release, rank: 1, step: 1)
        XCTAssertEqual(broadcastPeers(back), [w1], "released: the step's weights")
        XCTAssertEqual(reports(back), [], "no join to report: the assignment is the same")
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 1), from: w1)), "once")
        XCTAssertNil(broadcastPeers(try command(.release, rank: 1, step: 1)), "once")
        for push in pushes(begin: 0, end: 2, step: 1) { try feed(push, from: w0) }
        for push in pushes(begin: 2, end: 4, step: 1) { try feed(push, from: w1) }
        XCTAssertEqual(broadcastPeers(try feed(.shardCommand(ShardCommand(kind: .apply, step: 1, norm: 1, broadcastNext: true)), from: coordinator)),
                       [w0, w1])
        XCTAssertTrue(try feed(pushes(begin: 2, end: 4, step: 0)[0], from: w1).isEmpty, "worker 1 may still send late work of step 1")
        XCTAssertEqual(rejections(try feed(pushes(begin: 0, end: 2, step: 1)[0], from: w0)).count, 1,
                       "a push of step 2, which had no re-issue, is stale as before")
    }

    /// A reassignment while worker 1 is behind: the coordinator holds it back at once, so the
    /// step goes out without its hello; released, it gets the weights with its hello, which
    /// (sent after its welcome, on its own connection) may come after the release.
    func testAfterAReassignARankHeldBackIsNotWaitedFor() throws {
        try gathering()
        _ = try feed(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets)), from: coordinator)
        XCTAssertTrue(try command(.holdBack, rank: 1, step: 0).isEmpty)
        XCTAssertEqual(broadcastPeers(try feed(hello(rank: 0), from: w0)), [w0])
        XCTAssertNil(broadcastPeers(try command(.release, rank: 1, step: 0)), "no hello yet: nowhere to send")
        let back = try feed(hello(rank: 1), from: w1)
        XCTAssertEqual(broadcastPeers(back), [w1])
        XCTAssertEqual(reports(back), [.workerJoined], "a hello of the new assignment")
    }

    /// The order the hostile sharded run hit: the held worker's hello (after a welcome) reached
    /// the shard before the coordinator's hold did. Once hello-driven, the hold then lasted
    /// forever: the worker never got weights again, its nodes were copied every step, and
    /// the first copy refused (its grant late too) froze the step. Hold and release come on the
    /// coordinator's connection, in order: the release brings the weights.
    func testAHelloThatOvertakesTheHoldDoesNotLeaveTheRankHeldForever() throws {
        try gathering()
        _ = try grant(2, 4, owner: 1, helper: 0)
        for push in pushes(begin: 0, end: 2) + pushes(begin: 2, end: 4) { try feed(push, from: w0) }
        XCTAssertNil(broadcastPeers(try feed(hello(rank: 1), from: w1)))
        _ = try command(.holdBack, rank: 1, step: 0)
        let applied = try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)), from: coordinator)
        XCTAssertEqual(broadcastPeers(applied), [w0])
        XCTAssertEqual(broadcastPeers(try command(.release, rank: 1, step: 1)), [w1])
    }

    /// Its release may come once the step's sum is made (copies brought every node): that
    /// step's weights stay in the range until `apply`, and they go to it.
    func testAHeldRankReleasedWhileTheStepIsSummedGetsThatStepsWeights() throws {
        try gathering()
        _ = try grant(2, 4, owner: 1, helper: 0)
        for push in pushes(begin: 0, end: 2) + pushes(begin: 2, end: 4) { try feed(push, from: w0) }
        _ = try command(.holdBack, rank: 1, step: 0)
        let applied = try feed(.shardCommand(ShardCommand(kind: .apply, step: 0, norm: 1, broadcastNext: true)), from: coordinator)
        XCTAssertEqual(broadcastPeers(applied), [w0])
        // Step 2: worker 0 computes its node and a copy of worker 1's.
        _ = try grant(2, 4, owner: 1, helper: 0, step: 1)
        for push in pushes(begin: 0, end: 2, step: 1) + pushes(begin: 2, end: 4, step: 1) { try feed(push, from: w0) }
        XCTAssertNotNil(machine.run?.summed)
        let before = Array(machine.run!.update.parameters)
        XCTAssertEqual(broadcastPeers(try command(.release, rank: 1, step: 1)), [w1])
        XCTAssertEqual(Array(machine.run!.update.parameters), before)
        XCTAssertTrue(try feed(pushes(begin: 2, end: 4, step: 1)[0], from: w1).isEmpty, "its own copy is too late: dropped quietly")
    }

    func testAGrantOrHoldThatDoesNotFitTheRunEndsTheShard() throws {
        try gathering()
        let notANode = "not a node of that rank's block in step 1 of 2 ranks"
        for (begin, end, owner, helper, step) in [(2, 4, 1, 0, 1), (0, 2, 1, 0, 0), (2, 4, 1, 1, 0), (2, 4, 1, 5, 0), (2, 4, 7, 0, 0),
                                                  (4, 2, 1, 0, 0), (2, 3, 1, 0, 0), (2, 9, 1, 0, 0)] as [(UInt32, UInt32, UInt32, UInt32, UInt64)] {
            let failed = try XCTUnwrap(failure(try grant(begin, end, owner: owner, helper: helper, step: step)), "\(begin)..<\(end) \(owner)→\(helper)")
            XCTAssertTrue("\(failed)".hasSuffix(notANode), "\(failed)")
        }
        XCTAssertTrue(machine.run!.copies.grants.isEmpty, "nothing was recorded")
        for (owner, step) in [(2, 0), (0, 3)] as [(UInt32, UInt64)] {
            XCTAssertNotNil(failure(try command(.holdBack, rank: owner, step: step)))
            XCTAssertNotNil(failure(try command(.release, rank: owner, step: step)))
        }
        XCTAssertTrue(machine.run!.copies.held.isEmpty)
    }
}
