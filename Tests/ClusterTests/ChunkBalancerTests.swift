import XCTest
@testable import Cluster

/// `ChunkBalancer`, the policy of `--balance on`: sizes by measured speed, at least one chunk
/// each, and the hysteresis that keeps it from moving chunks for noise.
final class ChunkBalancerTests: XCTestCase {
    private let ids: [PeerIdentity] = (0..<4).map { [UInt8(65 + $0)] }

    /// Feeds `steps` steps in which worker i computes its `sizes[i]` chunks at `perChunk[i]` s each.
    private func feed(_ balancer: inout ChunkBalancer, sizes: [Int], perChunk: [Double], steps: Int = 5) {
        for _ in 0..<steps {
            balancer.observe(sizes.indices.map { (ids[$0], Double(sizes[$0]) * perChunk[$0], sizes[$0]) })
        }
    }

    func testSizesFollowSpeedAndEveryWorkerKeepsAChunk() {
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [0.05, 0.05, 0.05, 0.2], chunks: 8), [3, 2, 2, 1])
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [0.01, 0.02], chunks: 9), [6, 3], "twice as fast, twice the chunks")
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [1, 1, 1], chunks: 7), [3, 2, 2], "equal speeds: the equal split")
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [0.001, 100, 100], chunks: 5), [3, 1, 1], "at least one each")
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [1, 1], chunks: 2), [1, 1])
    }

    /// The greedy split is the best one: no other split of 7 chunks over these speeds finishes sooner.
    func testTheSplitMinimisesThePredictedStep() {
        let speeds = [0.03, 0.05, 0.11]
        let best = ChunkBalancer.predictedSeconds(sizes: ChunkBalancer.sizes(secondsPerChunk: speeds, chunks: 7), secondsPerChunk: speeds)
        for a in 1...5 {
            for b in 1...(6 - a) {
                let other = ChunkBalancer.predictedSeconds(sizes: [a, b, 7 - a - b], secondsPerChunk: speeds)
                XCTAssertGreaterThanOrEqual(other, best - 1e-12, "\([a, b, 7 - a - b]) beats the balancer's split")
            }
        }
    }

    /// W = 4 over 8 chunks, one worker 4× slower: after 5 steps, 2/2/2/2 becomes 3/2/2/1.
    func testASlowWorkerGivesUpChunksAfterTheWindow() throws {
        var balancer = ChunkBalancer()
        balancer.assigned(members: ids)
        let perChunk = [0.05, 0.05, 0.05, 0.2]
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: perChunk, steps: 4)
        XCTAssertNil(balancer.proposal(members: ids, sizes: [2, 2, 2, 2]), "four steps are not a window")
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: perChunk, steps: 1)
        let proposal = try XCTUnwrap(balancer.proposal(members: ids, sizes: [2, 2, 2, 2]))
        XCTAssertEqual(proposal.sizes, [3, 2, 2, 1])
        XCTAssertEqual(proposal.currentSeconds, 0.4, accuracy: 1e-12)
        XCTAssertEqual(proposal.predictedSeconds, 0.2, accuracy: 1e-12)
        XCTAssertEqual(Coordinator.rebalanceLine(step: 5, from: [2, 2, 2, 2], proposal),
                       "rebalanced chunks at step 6: worker 0 2→3, worker 3 2→1 (compute per chunk 50/50/50/200 ms; predicted step 400 → 200 ms)")
    }

    /// Once balanced, the same speeds propose nothing; and after any assignment the next
    /// proposal waits `minimumSteps` steps.
    func testABalancedSplitStaysAndAssignmentsAreNotRepeatedWithinMinimumSteps() {
        var balancer = ChunkBalancer()
        let perChunk = [0.05, 0.05, 0.05, 0.2]
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: perChunk)
        balancer.assigned(members: ids)
        feed(&balancer, sizes: [3, 2, 2, 1], perChunk: perChunk, steps: 4)
        XCTAssertNil(balancer.proposal(members: ids, sizes: [2, 2, 2, 2]), "within minimumSteps of the last assignment")
        feed(&balancer, sizes: [3, 2, 2, 1], perChunk: perChunk, steps: 20)
        XCTAssertNil(balancer.proposal(members: ids, sizes: [3, 2, 2, 1]), "already the best split")
    }

    /// A 4% better split is not worth a reassignment, a 20% one is; and saving under 5 ms a
    /// step is noise, whatever the share.
    func testOnlyAClearGainMovesChunks() {
        var balancer = ChunkBalancer()
        // 20 chunks at 10/10, 0.1 vs 0.115 s per chunk: the best split, 11/9, saves 1.15 → 1.1 s (4%).
        feed(&balancer, sizes: [10, 10], perChunk: [0.1, 0.115])
        XCTAssertEqual(ChunkBalancer.sizes(secondsPerChunk: [0.1, 0.115], chunks: 20), [11, 9])
        XCTAssertNil(balancer.proposal(members: Array(ids[0..<2]), sizes: [10, 10]))
        var clear = ChunkBalancer()
        feed(&clear, sizes: [5, 5], perChunk: [0.1, 0.15])   // 0.75 → 0.6 s: 20%
        XCTAssertEqual(clear.proposal(members: Array(ids[0..<2]), sizes: [5, 5])?.sizes, [6, 4])
        var tiny = ChunkBalancer()
        feed(&tiny, sizes: [5, 5], perChunk: [0.0001, 0.0004])   // 50% of 2 ms
        XCTAssertNil(tiny.proposal(members: Array(ids[0..<2]), sizes: [5, 5]))
    }

    /// A transient straggler recovered: blocks of 9 going back to 8 save about 11%, less with
    /// the medians' noise (here 9.4%), and still move.
    func testAReturnToEqualBlocksMovesThoughItSavesUnderTenPercent() {
        var balancer = ChunkBalancer()
        let members = Array(ids[0..<3])
        feed(&balancer, sizes: [9, 9, 6], perChunk: [0.0103, 0.010, 0.0105])
        let proposal = balancer.proposal(members: members, sizes: [9, 9, 6])
        XCTAssertEqual(proposal?.sizes, [8, 8, 8])
        XCTAssertEqual(proposal.map { 1 - $0.predictedSeconds / $0.currentSeconds } ?? 0, 0.094, accuracy: 0.001)
    }

    /// W = 8 after a transient straggler recovered with 2 chunks: a fixed 1 ms per step makes
    /// it look 5% slower per chunk, so the return to 8 each predicts 7.7%, and still moves.
    func testARecoveredWorkerWithFewChunksGetsThemBackDespiteItsFixedCost() {
        let eight: [PeerIdentity] = (0..<8).map { [UInt8(97 + $0)] }
        let sizes = [9, 9, 9, 9, 9, 2, 8, 9]
        var balancer = ChunkBalancer()
        for _ in 0..<5 {
            balancer.observe(sizes.indices.map { (eight[$0], Double(sizes[$0]) * 0.010 + 0.001, sizes[$0]) })
        }
        let proposal = balancer.proposal(members: eight, sizes: sizes)
        XCTAssertEqual(proposal?.sizes, [Int](repeating: 8, count: 8))
        XCTAssertEqual(proposal.map { 1 - $0.predictedSeconds / $0.currentSeconds } ?? 0, 0.077, accuracy: 0.001)
    }

    /// The median of the last 5 steps: one slow step moves nothing; a lasting change does.
    func testOneOutlierStepMovesNothing() {
        var balancer = ChunkBalancer()
        feed(&balancer, sizes: [2, 2], perChunk: [0.05, 0.05], steps: 4)
        feed(&balancer, sizes: [2, 2], perChunk: [0.05, 0.5], steps: 1)
        XCTAssertNil(balancer.proposal(members: Array(ids[0..<2]), sizes: [2, 2]))
        feed(&balancer, sizes: [2, 2], perChunk: [0.05, 0.5], steps: 2)
        XCTAssertEqual(balancer.proposal(members: Array(ids[0..<2]), sizes: [2, 2])?.sizes, [3, 1])
    }

    /// A real change of speed (two steps in a row at more than twice, or less than half, the
    /// median) replaces the worker's window and moves chunks at the next boundary, without
    /// waiting for the median or for `minimumSteps`; both ways (a transient straggler returns).
    func testTwoStepsAtAnotherSpeedMoveChunksAtOnceBothWays() {
        var balancer = ChunkBalancer()
        let members = Array(ids[0..<4])
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: [0.05, 0.05, 0.05, 0.05], steps: 6)
        balancer.assigned(members: members)
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: [0.05, 0.05, 0.05, 0.2], steps: 1)
        XCTAssertNil(balancer.proposal(members: members, sizes: [2, 2, 2, 2]), "one slow step moves nothing")
        feed(&balancer, sizes: [2, 2, 2, 2], perChunk: [0.05, 0.05, 0.05, 0.2], steps: 1)
        let slower = try? XCTUnwrap(balancer.proposal(members: members, sizes: [2, 2, 2, 2]))
        XCTAssertEqual(slower?.sizes, [3, 2, 2, 1])
        XCTAssertEqual(balancer.secondsPerChunk(of: ids[3]), 0.2)
        balancer.assigned(members: members)
        feed(&balancer, sizes: [3, 2, 2, 1], perChunk: [0.05, 0.05, 0.05, 0.05], steps: 2)
        XCTAssertEqual(balancer.proposal(members: members, sizes: [3, 2, 2, 1])?.sizes, [2, 2, 2, 2], "it is fast again: its chunks come back")
    }

    /// A worker that fell behind in the first step (a copy of its node won) does not keep its
    /// chunks until every window is full: two steps of the others' measurements are enough;
    /// one (a start-up step) is not.
    func testAWorkerBehindFromTheFirstStepGivesUpChunksAfterTwoSteps() throws {
        var balancer = ChunkBalancer()
        balancer.assigned(members: ids)
        feed(&balancer, sizes: [2, 2, 2, 0], perChunk: [0.05, 0.05, 0.05, 0], steps: 1)
        balancer.fellBehind(ids[3], secondsPerChunk: 0.11)
        balancer.observeLate(ids[3], secondsPerChunk: 0.2)
        XCTAssertNil(balancer.proposal(members: ids, sizes: [2, 2, 2, 2]), "one step of the others is not enough")
        feed(&balancer, sizes: [2, 2, 2, 0], perChunk: [0.05, 0.05, 0.05, 0], steps: 1)
        let proposal = try XCTUnwrap(balancer.proposal(members: ids, sizes: [2, 2, 2, 2]))
        XCTAssertEqual(proposal.sizes, [3, 2, 2, 1])
        var calm = ChunkBalancer()
        calm.assigned(members: ids)
        feed(&calm, sizes: [2, 2, 2, 2], perChunk: [0.05, 0.05, 0.05, 0.2], steps: 2)
        XCTAssertNil(calm.proposal(members: ids, sizes: [2, 2, 2, 2]), "without a worker behind, proposals wait for full windows")
    }

    /// Reports of no compute (zero, negative, nan) tell nothing: no proposal from them; a
    /// worker without a full window (it joined late) holds every proposal back; a lost
    /// worker's measurements are forgotten.
    func testMissingOrBrokenMeasurementsProposeNothing() {
        var zero = ChunkBalancer()
        feed(&zero, sizes: [2, 2], perChunk: [0, 0])
        XCTAssertNil(zero.proposal(members: Array(ids[0..<2]), sizes: [2, 2]))
        var broken = ChunkBalancer()
        feed(&broken, sizes: [2, 2], perChunk: [.nan, -1])
        XCTAssertNil(broken.secondsPerChunk(of: ids[0]))
        XCTAssertNil(broken.proposal(members: Array(ids[0..<2]), sizes: [2, 2]))
        var late = ChunkBalancer()
        feed(&late, sizes: [2, 2], perChunk: [0.05, 0.2])
        XCTAssertNil(late.proposal(members: Array(ids[0..<3]), sizes: [2, 1, 1]), "worker 2 has no measurements yet")
        late.assigned(members: [ids[0]])
        XCTAssertNil(late.secondsPerChunk(of: ids[1]), "a worker no longer assigned is forgotten")
        XCTAssertEqual(late.secondsPerChunk(of: ids[0]), 0.05)
    }
}
