import Foundation

/// Runs a program to its end and captures what it printed: the one process runner of the
/// test targets (the CLI tests, the tool tests, the cluster tests).
public enum ProcessRunner {
    public struct Result {
        public var status: Int32
        public var standardOutput: String
        public var standardError: String

        /// stderr's lines without the trailing empty one.
        public var errorLines: [Substring] { standardError.split(separator: "\n", omittingEmptySubsequences: false).dropLast() }
        public var all: String { "exit \(status)\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)" }
    }

    public struct Timeout: Error, CustomStringConvertible {
        public var arguments: [String]
        public var seconds: TimeInterval
        public var description: String { "\(arguments.joined(separator: " ")) did not finish within \(seconds) s" }
    }

    /// Runs `executable arguments…` in `directory`, killing it after `timeout` seconds. Output
    /// goes through files, so a chatty program never blocks on a full pipe. `environment` is
    /// added to this process's environment for the child.
    public static func run(_ executable: URL, _ arguments: [String], in directory: URL,
                           timeout: TimeInterval = 60, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        process.currentDirectoryURL = directory
        let scratch = FileManager.default.temporaryDirectory
        let output = scratch.appendingPathComponent("recur-test-stdout-\(UUID().uuidString)")
        let error = scratch.appendingPathComponent("recur-test-stderr-\(UUID().uuidString)")
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
            throw Timeout(arguments: [executable.lastPathComponent] + arguments, seconds: timeout)
        }
        try outputHandle.close()
        try errorHandle.close()
        return Result(status: process.terminationStatus,
                      standardOutput: String(decoding: try Data(contentsOf: output), as: UTF8.self),
                      standardError: String(decoding: try Data(contentsOf: error), as: UTF8.self))
    }

    /// The package root above `file` (the directory holding Package.swift).
    public static func packageRoot(file: StaticString = #filePath) -> URL? {
        var directory = URL(fileURLWithPath: "\(file)").deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        return nil
    }

    /// The built `recur`: next to the test bundle (SwiftPM puts executables and the `.xctest`
    /// bundle in one products directory), else under `.build/release` or `.build/debug`.
    public static func recurExecutable() -> URL? {
        var candidates: [URL] = []
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("recur"))
        }
        if let root = packageRoot() {
            candidates.append(root.appendingPathComponent(".build/release/recur"))
            candidates.append(root.appendingPathComponent(".build/debug/recur"))
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}
