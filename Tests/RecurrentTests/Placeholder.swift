import XCTest
final class RecurrentTestsPlaceholder: XCTestCase { func testNothing() {} }
