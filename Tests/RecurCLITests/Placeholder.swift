import XCTest
final class RecurCLITestsPlaceholder: XCTestCase { func testNothing() {} }
