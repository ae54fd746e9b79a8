import Foundation
import TestSupport

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

    /// Runs `recur arguments…` in `directory` (so that default output paths land there).
    func run(_ arguments: [String], in directory: URL, timeout: TimeInterval = 60) throws -> Result {
        try ProcessRunner.run(executable, arguments, in: directory, timeout: timeout)
    }
}
