import Foundation

/// Runs the built `recur` executable and captures what it prints.
///
/// The binary is looked up next to the test bundle (SwiftPM puts executables and the
/// `.xctest` bundle in the same products directory, and `swift test` builds every executable),
/// then under the package's `.build/release` and `.build/debug`.
struct BinaryRunner {
    struct Result {
        var status: Int32
        var standardOutput: String
        var standardError: String

        /// stderr's lines without the trailing empty one.
        var errorLines: [Substring] { standardError.split(separator: "\n", omittingEmptySubsequences: false).dropLast() }
        var all: String { "exit \(status)\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)" }
    }

    let executable: URL

    static func locate(file: StaticString = #filePath) throws -> BinaryRunner {
        var candidates: [URL] = []
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("recur"))
        }
        var directory = URL(fileURLWithPath: "\(file)").deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                candidates.append(directory.appendingPathComponent(".build/release/recur"))
                candidates.append(directory.appendingPathComponent(".build/debug/recur"))
                break
            }
            directory.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw BinaryNotFound(candidates: candidates.map(\.path))
        }
        return BinaryRunner(executable: found)
    }

    struct BinaryNotFound: Error, CustomStringConvertible {
        var candidates: [String]
        var description: String {
            "the recur executable was not found (looked at \(candidates.joined(separator: ", "))); build it with `swift build -c release`"
        }
    }

    /// Runs `recur arguments…` in `directory` (so that default output paths land there),
    /// killing it after `timeout` seconds.
    func run(_ arguments: [String], in directory: URL, timeout: TimeInterval = 60) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let output = directory.appendingPathComponent(".stdout-\(UUID().uuidString)")
        let error = directory.appendingPathComponent(".stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        _ = FileManager.default.createFile(atPath: error.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: output)
            try? FileManager.default.removeItem(at: error)
        }
        let outputHandle = try FileHandle(forWritingTo: output), errorHandle = try FileHandle(forWritingTo: error)
        process.standardOutput = outputHandle
        process.standardError = errorHandle
        process.standardInput = FileHandle.nullDevice
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try process.run()
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            finished.wait()
            throw Timeout(arguments: arguments, seconds: timeout)
        }
        try outputHandle.close()
        try errorHandle.close()
        return Result(status: process.terminationStatus,
                      standardOutput: String(decoding: try Data(contentsOf: output), as: UTF8.self),
                      standardError: String(decoding: try Data(contentsOf: error), as: UTF8.self))
    }

    struct Timeout: Error, CustomStringConvertible {
        var arguments: [String]
        var seconds: TimeInterval
        var description: String { "recur \(arguments.joined(separator: " ")) did not finish within \(seconds) s" }
    }
}
