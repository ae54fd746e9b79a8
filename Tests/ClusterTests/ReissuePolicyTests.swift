import XCTest
@testable import Cluster

/// `ReissuePolicy`: which nodes of a worker still computing an idle worker takes, from the
/// time the step has run and the measured speeds; no clock, no sockets.
final class ReissuePolicyTests: XCTestCase {
    private let policy = ReissuePolicy()
    private let a: PeerIdentity = [1], b: PeerIdentity = [2], c: PeerIdentity = [3], x: PeerIdentity = [9]

    /// `startedAt`: seconds after the step's start it got the weights; nil: not yet.
    private func owner(_ id: PeerIdentity, chunks: Int, open: [Range<Int>], perChunk: Double?, startedAt: Double? = 0) -> ReissuePolicy.Owner {
        ReissuePolicy.Owner(identity: id, chunks: chunks, openNodes: open, secondsPerChunk: perChunk, startedAt: startedAt)
    }

    private func helpers(_ ids: [PeerIdentity], perChunk: Double? = 0.05) -> [ReissuePolicy.Helper] {
        ids.map { ReissuePolicy.Helper(identity: $0, secondsPerChunk: perChunk) }
    }

    func testAnEqualFleetReissuesNothing() {
        // Everyone 50 ms per chunk, 2 chunks: the others are done at 100 ms, the last one is
        // due at 100 ms; a helper would need until 150 (one chunk) or 200.
        for elapsed in [0.100, 0.110, 0.140] {
            XCTAssertEqual(policy.decisions(elapsed: elapsed, owners: [owner(x, chunks: 2, open: [6..<8], perChunk: 0.05)],
                                            finishedSecondsPerChunk: [0.05, 0.05, 0.05], idle: helpers([a, b, c])), [])
        }
    }

    func testASteadyStragglersChunkGoesToTheFirstIdleWorkerWhenItWouldFinishSooner() {
        // 200 ms per chunk, one chunk: due at 200 ms; an idle worker at 100 ms finishes at 150.
        let decisions = policy.decisions(elapsed: 0.100, owners: [owner(x, chunks: 1, open: [7..<8], perChunk: 0.2)],
                                         finishedSecondsPerChunk: [0.05, 0.05, 0.05], idle: helpers([b, a]))
        XCTAssertEqual(decisions, [ReissuePolicy.Decision(node: 7..<8, owner: x, helper: b)])
        // At 160 ms a helper would finish at 210: no gain.
        XCTAssertEqual(policy.decisions(elapsed: 0.160, owners: [owner(x, chunks: 1, open: [7..<8], perChunk: 0.2)],
                                        finishedSecondsPerChunk: [0.05], idle: helpers([a])), [])
        // On time with two chunks (due at 400 ms): the balancer's business, however soon a helper would be.
        XCTAssertEqual(policy.decisions(elapsed: 0.100, owners: [owner(x, chunks: 2, open: [6..<7, 7..<8], perChunk: 0.2)],
                                        finishedSecondsPerChunk: [0.05], idle: helpers([a, b])), [])
    }

    func testAWorkerPastItsOwnExpectedTimeIsLateAndEachOpenNodeGetsOneHelper() {
        // Measured at 50 ms per chunk × 4 chunks = 200 ms; at 401 ms it is past 2× that.
        let late = owner(x, chunks: 4, open: [4..<6, 6..<8], perChunk: 0.05)
        XCTAssertEqual(policy.decisions(elapsed: 0.399, owners: [late], finishedSecondsPerChunk: [0.05], idle: helpers([a, b])), [])
        XCTAssertEqual(policy.decisions(elapsed: 0.401, owners: [late], finishedSecondsPerChunk: [0.05], idle: helpers([a, b, c])),
                       [.init(node: 4..<6, owner: x, helper: a), .init(node: 6..<8, owner: x, helper: b)])
        // Fewer helpers than nodes: the first nodes get them.
        XCTAssertEqual(policy.decisions(elapsed: 0.401, owners: [late], finishedSecondsPerChunk: [0.05], idle: helpers([c])),
                       [.init(node: 4..<6, owner: x, helper: c)])
        // A short step: 2 ms expected, 5 ms is scheduling noise, not a stall (20 ms at least).
        let quick = owner(x, chunks: 1, open: [7..<8], perChunk: 0.002)
        XCTAssertEqual(policy.decisions(elapsed: 0.005, owners: [quick], finishedSecondsPerChunk: [0.002], idle: helpers([a], perChunk: 0.002)), [])
    }

    func testAWorkerHeldBackHasItsNodesTakenAtOnceAndOneThatStartedLateIsJudgedFromItsStart() {
        let held = owner(x, chunks: 2, open: [6..<8], perChunk: 0.01, startedAt: nil)
        XCTAssertEqual(policy.decisions(elapsed: 0.001, owners: [held], finishedSecondsPerChunk: [], idle: helpers([a])),
                       [.init(node: 6..<8, owner: x, helper: a)])
        // Given the weights 80 ms into the step, 2 chunks of 50 ms: due at 180 ms, late after 280.
        let resumed = owner(x, chunks: 2, open: [6..<8], perChunk: 0.05, startedAt: 0.08)
        XCTAssertEqual(policy.decisions(elapsed: 0.27, owners: [resumed], finishedSecondsPerChunk: [0.05], idle: helpers([a])), [])
        XCTAssertEqual(policy.decisions(elapsed: 0.29, owners: [resumed], finishedSecondsPerChunk: [0.05], idle: helpers([a])),
                       [.init(node: 6..<8, owner: x, helper: a)])
        // One chunk, given the weights at 80 ms: due at 280 ms; a helper idle at 100 ms is done at 150.
        let single = owner(x, chunks: 1, open: [7..<8], perChunk: 0.2, startedAt: 0.08)
        XCTAssertEqual(policy.decisions(elapsed: 0.1, owners: [single], finishedSecondsPerChunk: [0.05], idle: helpers([a])),
                       [.init(node: 7..<8, owner: x, helper: a)])
    }

    func testWithoutAnyMeasurementTheFinishedWorkersStandIn() {
        // No own measurement: the finished workers' 50 ms per chunk predicts 100 ms.
        let unmeasured = owner(x, chunks: 2, open: [6..<8], perChunk: nil)
        XCTAssertEqual(policy.decisions(elapsed: 0.199, owners: [unmeasured], finishedSecondsPerChunk: [0.05, 0.05], idle: helpers([a], perChunk: nil)), [])
        XCTAssertEqual(policy.decisions(elapsed: 0.201, owners: [unmeasured], finishedSecondsPerChunk: [0.05, 0.05], idle: helpers([a], perChunk: nil)),
                       [.init(node: 6..<8, owner: x, helper: a)])
        // Nothing finished, nothing measured: nothing to judge by.
        XCTAssertEqual(policy.decisions(elapsed: 10, owners: [unmeasured], finishedSecondsPerChunk: [], idle: helpers([a], perChunk: nil)), [])
    }

    func testNoIdleWorkerOrNoOpenNodeMeansNoDecision() {
        XCTAssertEqual(policy.decisions(elapsed: 1, owners: [owner(x, chunks: 1, open: [7..<8], perChunk: 0.05, startedAt: nil)],
                                        finishedSecondsPerChunk: [0.05], idle: []), [])
        XCTAssertEqual(policy.decisions(elapsed: 1, owners: [owner(x, chunks: 1, open: [], perChunk: 0.05, startedAt: nil)],
                                        finishedSecondsPerChunk: [0.05], idle: helpers([a])), [])
    }
}
