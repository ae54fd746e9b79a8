import XCTest
@testable import Cluster

/// The one heartbeat schedule of every role: the first beat at once, then one per interval,
/// min(1 s, timeout / 5).
final class HeartbeatScheduleTests: XCTestCase {
    func testTheIntervalIsAFifthOfTheTimeoutAtMostASecond() {
        XCTAssertEqual(HeartbeatSchedule.interval(forTimeout: 30), 1)
        XCTAssertEqual(HeartbeatSchedule.interval(forTimeout: 3), 0.6, accuracy: 1e-12)
        XCTAssertEqual(HeartbeatSchedule(timeout: 0.5).interval, 0.1, accuracy: 1e-12)
    }

    func testABeatIsDueFirstThenOncePerInterval() {
        var schedule = HeartbeatSchedule(timeout: 5)   // every second
        XCTAssertTrue(schedule.isDue(now: 100))
        XCTAssertFalse(schedule.isDue(now: 100.5))
        XCTAssertFalse(schedule.isDue(now: 100.999))
        XCTAssertTrue(schedule.isDue(now: 101))
        XCTAssertFalse(schedule.isDue(now: 101.2))
        XCTAssertTrue(schedule.isDue(now: 105))   // late: due once, not once per missed interval
        XCTAssertFalse(schedule.isDue(now: 105.1))
    }
}
