import Foundation
import XCTest

/// Runs the cluster test scripts, which start real nodes (network namespaces with sshd) and a
/// real single-node Slurm, and check their verdict: exit 0 and a closing "N passed, 0 failed"
/// line. Where namespaces or daemons are impossible (not root), a script says "SKIPPED: …";
/// that line is printed here so the test log shows what did not run.
final class ClusterScriptTests: XCTestCase {
    let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Run {
        var status: Int32
        var output: String
        var timedOut: Bool
    }

    /// The recur built beside this test bundle, when there is one, so the scripts test the
    /// binary of this build rather than whatever `.build/release/recur` holds.
    var builtBinary: String? {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidate = directory.appendingPathComponent("recur").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }

    /// Runs `bash script` from the repository with stdout and stderr in one file; stops it with
    /// SIGTERM (the scripts clean up on TERM) after `seconds`.
    func runScript(_ script: String, seconds: Double) throws -> Run {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("\(script.replacingOccurrences(of: "/", with: "-"))-\(getpid()).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: log.path])
        }
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script]
        process.currentDirectoryURL = repository
        var environment = ProcessInfo.processInfo.environment
        if let builtBinary { environment["RECUR_BINARY"] = builtBinary }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try process.run()
        var timedOut = false
        if finished.wait(timeout: .now() + seconds) == .timedOut {
            timedOut = true
            process.terminate()
            _ = finished.wait(timeout: .now() + 60)
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return Run(status: process.terminationStatus, output: output, timedOut: timedOut)
    }

    /// Asserts a clean pass and prints the script's verdict lines (and any SKIPPED line).
    func check(_ run: Run, script name: String, file: StaticString = #filePath, line: UInt = #line) {
        let lines = run.output.split(separator: "\n").map(String.init)
        for text in lines where text.hasPrefix("SKIPPED:") || text.hasPrefix("\(name): ") {
            print(text)
        }
        let summary = "\(name): [1-9][0-9]* passed, 0 failed"
        let passed = lines.contains { $0.range(of: "^\(summary)$", options: .regularExpression) != nil }
        if run.timedOut || run.status != 0 || !passed {
            print(lines.suffix(60).joined(separator: "\n"))
        }
        XCTAssertFalse(run.timedOut, "\(name) did not finish in time", file: file, line: line)
        XCTAssertEqual(run.status, 0, "\(name) failed (exit status \(run.status))", file: file, line: line)
        XCTAssertTrue(passed, "\(name) printed no '\(summary)' line", file: file, line: line)
    }

    func testLauncherAcrossNamespaceNodes() throws {
        let run = try runScript("scripts/test-cluster", seconds: 900)
        check(run, script: "test-cluster")
        if !run.output.contains("SKIPPED:") {
            XCTAssertTrue(run.output.contains("test-cluster: ok: failure: the coordinator names the dead worker"),
                          "the worker-failure case did not run")
            XCTAssertTrue(run.output.contains("test-cluster: ok: secure: the coordinator's ZAP handler refused the intruder's key"),
                          "the authentication case did not run")
        }
    }

    func testSlurmBatchScript() throws {
        let run = try runScript("scripts/test-slurm", seconds: 900)
        if run.output.contains("SKIPPED:") {
            print(run.output.split(separator: "\n").filter { $0.hasPrefix("SKIPPED:") }.joined(separator: "\n"))
            XCTAssertEqual(run.status, 0, "test-slurm skipped but exited \(run.status)")
            return
        }
        check(run, script: "test-slurm")
        XCTAssertTrue(run.output.contains("test-slurm: ok: train: Slurm reports COMPLETED, exit code 0:0"),
                      "the training job case did not run")
    }
}
