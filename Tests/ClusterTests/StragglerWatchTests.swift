import XCTest
@testable import Cluster

final class StragglerWatchTests: XCTestCase {
    private func step(_ seconds: [Double]) -> [(rank: Int, seconds: Double, name: String)] {
        seconds.enumerated().map { ($0.offset, $0.element, "worker \($0.offset)") }
    }

    /// Named once, after 20 slow steps in a row; a fast step in between starts the count anew.
    func testASlowWorkerIsNamedOnceAfterTwentyStepsInARow() {
        var watch = StragglerWatch()
        for _ in 0..<19 { XCTAssertEqual(watch.observe(step([0.10, 0.10, 0.13])), []) }
        XCTAssertEqual(watch.observe(step([0.10, 0.10, 0.10])), [], "a normal step resets the count")
        for _ in 0..<19 { XCTAssertEqual(watch.observe(step([0.10, 0.10, 0.13])), []) }
        let named = watch.observe(step([0.10, 0.10, 0.13]))
        XCTAssertEqual(named.count, 1)
        XCTAssertTrue(named[0].hasPrefix("worker 2 is a straggler") && named[0].contains("130 ms vs 100 ms"), named[0])
        for _ in 0..<40 { XCTAssertEqual(watch.observe(step([0.10, 0.10, 0.13])), [], "named only once") }
    }

    func testWithinTheMarginOrAloneNobodyIsNamed() {
        var watch = StragglerWatch()
        for _ in 0..<50 {
            XCTAssertEqual(watch.observe(step([0.10, 0.124])), [])
            XCTAssertEqual(watch.observe(step([5.0])), [])
        }
    }

    /// Issue 21 item 12: sub-millisecond steps said "(last 0 ms vs 0 ms)". Differences under a
    /// millisecond are noise, and short steps are given with a decimal.
    func testSubMillisecondDifferencesAreNoiseAndShortStepsKeepADecimal() {
        var watch = StragglerWatch()
        for _ in 0..<50 { XCTAssertEqual(watch.observe(step([0.0002, 0.0002, 0.0004])), []) }
        for _ in 0..<19 { XCTAssertEqual(watch.observe(step([0.002, 0.002, 0.0045])), []) }
        let named = watch.observe(step([0.002, 0.002, 0.0045]))
        XCTAssertEqual(named.count, 1)
        XCTAssertTrue(named.first?.contains("(last 4.5 ms vs 2.0 ms)") == true, "\(named)")
    }
}
