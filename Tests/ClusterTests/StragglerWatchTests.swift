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
}
