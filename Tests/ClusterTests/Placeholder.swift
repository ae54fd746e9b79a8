import XCTest
final class ClusterTestsPlaceholder: XCTestCase { func testNothing() {} }
