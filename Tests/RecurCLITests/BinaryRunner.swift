import Foundation
import TestSupport
import XCTest

/// A test case that runs the built `recur` in a scratch directory of its own (removed after
/// each test).
class RecurBinaryTestCase: XCTestCase {
    var recur: BinaryRunner!
    var scratch: TemporaryDirectory!
    /// Prefix of the scratch directory's name.
    class var scratchPrefix: String { "recur-cli" }

    override func setUpWithError() throws {
        recur = try BinaryRunner.locate()
        scratch = TemporaryDirectory(Self.scratchPrefix)
    }

    override func tearDown() { scratch = nil }

    /// A failure a user caused: non-zero exit (`status` when given), exactly one line on
    /// stderr, `recur: …`, naming each of `mentions`, and no trap.
    func assertOneLineError(_ result: BinaryRunner.Result, mentions: [String], status: Int32? = nil,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(result.status, 0, result.all, file: file, line: line)
        if let status { XCTAssertEqual(result.status, status, result.all, file: file, line: line) }
        XCTAssertEqual(result.errorLines.count, 1, "exactly one stderr line expected; \(result.all)", file: file, line: line)
        XCTAssertTrue(result.standardError.hasPrefix("recur: "), result.all, file: file, line: line)
        for word in mentions {
            XCTAssertTrue(result.standardError.contains(word), "stderr should mention \(word); \(result.all)", file: file, line: line)
        }
        XCTAssertFalse(result.standardError.contains("Fatal error"), result.all, file: file, line: line)
    }
}

/// Runs the built `recur` executable (found by `ProcessRunner.recurExecutable`) and captures
/// what it prints.
struct BinaryRunner {
    typealias Result = ProcessRunner.Result
    let executable: URL

    static func locate() throws -> BinaryRunner {
        guard let found = ProcessRunner.recurExecutable() else { throw BinaryNotFound() }
        return BinaryRunner(executable: found)
    }

    struct BinaryNotFound: Error, CustomStringConvertible {
        var description: String { "the recur executable was not found; build it with `swift build -c release`" }
    }

    /// Runs `recur arguments…` in `directory` (so that default output paths land there), with
    /// `environment` added to this process's.
    func run(_ arguments: [String], in directory: URL, timeout: TimeInterval = 60,
             environment: [String: String] = [:]) throws -> Result {
        try ProcessRunner.run(executable, arguments, in: directory, timeout: timeout, environment: environment)
    }
}
