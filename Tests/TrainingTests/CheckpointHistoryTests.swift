import Foundation
import TestSupport
@testable import Training
import XCTest

/// Named checkpoints after evaluations: the best one (linked as DIR-best) and `keep` recent
/// others stay, a resumed run finds them, a new run clears them, early stopping counts
/// evaluations without a new best.
final class CheckpointHistoryTests: XCTestCase {
    let directory = TemporaryDirectory("recur-history")

    /// Records `losses` at steps 10, 20, …; the write makes a directory with a marker file.
    func record(_ history: CheckpointHistory, _ losses: [Double], from first: Int = 1) throws -> [Bool] {
        try losses.enumerated().map { index, loss in
            try history.record(step: (first + index) * 10, loss: loss) { url in
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
                try Data("\(loss)".utf8).write(to: url.appendingPathComponent("marker"))
            }
        }
    }

    func names() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    func testKeepsTheBestAndTheRecentOnesAndLinksTheBest() throws {
        let history = CheckpointHistory(latest: directory.child("run"), keep: 1, earlyStop: 0, resumed: false)
        _ = try record(history, [3.0, 2.0, 2.5, 2.75, 1.5, 1.75])
        XCTAssertEqual(try names(), ["run-best", "run-step-000050-val-1.5000", "run-step-000060-val-1.7500"])
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: directory.child("run-best").path),
                       "run-step-000050-val-1.5000")
        XCTAssertEqual(history.best?.step, 50)

        // Without keep only improvements are written, and only the best stays.
        let only = TemporaryDirectory("recur-history")
        let best = CheckpointHistory(latest: only.child("run"), keep: 0, earlyStop: 0, resumed: false)
        var writes = 0
        for (step, loss) in [(1, 2.0), (2, 2.5), (3, 1.0), (4, 1.1)] {
            _ = try best.record(step: step, loss: loss) { url in
                writes += 1
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            }
        }
        XCTAssertEqual(writes, 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: only.path).sorted(), ["run-best", "run-step-000003-val-1.0000"])
    }

    func testResumedRunFindsItsNamedCheckpointsAndANewRunClearsThem() throws {
        _ = try record(CheckpointHistory(latest: directory.child("run"), keep: 5, earlyStop: 0, resumed: false), [2.0, 1.0, 3.0])
        let resumed = CheckpointHistory(latest: directory.child("run"), keep: 5, earlyStop: 0, resumed: true)
        XCTAssertEqual(resumed.entries.map(\.step), [10, 20, 30])
        XCTAssertEqual(resumed.best?.loss, 1.0)
        XCTAssertEqual(try record(resumed, [1.5], from: 4), [false])
        XCTAssertEqual(resumed.best?.step, 20, "1.5 is no better than the earlier part's 1.0")
        // Another prefix is another run's: untouched.
        try FileManager.default.createDirectory(at: directory.child("other-step-000010-val-1.0000"), withIntermediateDirectories: true)
        _ = CheckpointHistory(latest: directory.child("run"), keep: 5, earlyStop: 0, resumed: false)
        XCTAssertEqual(try names(), ["other-step-000010-val-1.0000"])
    }

    func testEarlyStopAfterKEvaluationsWithoutANewBest() throws {
        let history = CheckpointHistory(latest: directory.child("run"), keep: 0, earlyStop: 2, resumed: false)
        XCTAssertEqual(try record(history, [3.0, 2.0, 2.5, 1.9, 2.2, 2.0]), [false, false, false, false, false, true])
        XCTAssertEqual(history.evaluationsWithoutImprovement, 2)
    }
}
