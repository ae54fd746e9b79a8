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

    /// Runs `bash script arguments…` (or `interpreter script arguments…`) from the repository
    /// with stdout and stderr in one file; stops it with SIGTERM (the scripts clean up on TERM)
    /// after `seconds`.
    func runScript(_ script: String, _ arguments: [String] = [], seconds: Double,
                   interpreter: [String] = ["/bin/bash"]) throws -> Run {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("\(script.replacingOccurrences(of: "/", with: "-"))-\(getpid()).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: log.path])
        }
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: interpreter[0])
        process.arguments = interpreter.dropFirst() + [script] + arguments
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

    /// cluster/ and scripts/ run on bash 4.4 (RHEL 8; Ubuntu 20.04 has 5.0): scripts/lib/bash44-lint
    /// finds no bash 5 feature in them, and it does find each one it knows in a file that has
    /// them (so a clean verdict means something), while 4.4's own features pass.
    func testShellScriptsUseNoBash5Features() throws {
        let clean = try runScript("scripts/lib/bash44-lint", seconds: 60, interpreter: ["/usr/bin/env", "python3"])
        XCTAssertEqual(clean.status, 0, clean.output)
        XCTAssertTrue(clean.output.contains("shell script(s) clean: cluster/launch, cluster/slurm.sbatch"), clean.output)

        let sample = FileManager.default.temporaryDirectory.appendingPathComponent("bash5-\(getpid()).sh")
        defer { try? FileManager.default.removeItem(at: sample) }
        let lines = [
            "#!/usr/bin/env bash",
            "wait -n -p finished \"$a\" \"$b\"",        // 2
            "wait -f \"$pid\"",                           // 3
            "start=$EPOCHREALTIME",                        // 4
            "echo \"$EPOCHSECONDS\"",                      // 5
            "n=$SRANDOM",                                  // 6
            "BASH_ARGV0=name",                             // 7
            "echo \"${name@U} ${name@u} ${name@L}\"",      // 8
            "echo \"${map@K} ${map@k}\"",                  // 9
            "shopt -s assoc_expand_once localvar_inherit", // 10
            "shopt -s localvar_unset patsub_replacement",  // 11
            "wait -n; local -; echo \"${x@Q} ${x@A} ${#list[@]}\"   # wait -p in a comment",  // 12: bash 4.4
        ]
        try (lines.joined(separator: "\n") + "\n").write(to: sample, atomically: true, encoding: .utf8)
        let found = try runScript("scripts/lib/bash44-lint", [sample.path], seconds: 60, interpreter: ["/usr/bin/env", "python3"])
        XCTAssertEqual(found.status, 1, found.output)
        for (line, what) in [(2, "wait -p VAR (bash 5.1)"), (3, "wait -f (bash 5.0)"), (4, "$EPOCHREALTIME (bash 5.0)"),
                             (5, "$EPOCHSECONDS (bash 5.0)"), (6, "$SRANDOM (bash 5.1)"), (7, "BASH_ARGV0 (bash 5.0)"),
                             (8, "${var@U}/@u/@L case transformation (bash 5.1)"), (9, "${var@K} transformation (bash 5.1)"),
                             (9, "${var@k} transformation (bash 5.2)"), (10, "shopt assoc_expand_once (bash 5.0)"),
                             (10, "shopt localvar_inherit (bash 5.0)"), (11, "shopt localvar_unset (bash 5.1)"),
                             (11, "shopt patsub_replacement (bash 5.2)")] {
            XCTAssertTrue(found.output.contains("\(sample.path):\(line): \(what)"), "line \(line), \(what):\n\(found.output)")
        }
        XCTAssertFalse(found.output.contains("\(sample.path):12:"), "bash 4.4's features flagged:\n\(found.output)")
        XCTAssertTrue(found.output.contains("bash44-lint: 13 bash 5 feature(s) in 1 of 1 shell script(s)"), found.output)
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

    /// The many-node part of scripts/bench-scaling, tiny: W = 1 and 2 emulating workers (20 ms)
    /// in their own namespaces on 10 Gbit/s shaped links, LSTM 1×16, 1 + 2 steps. Its
    /// summary.json must hold one emulated record per W (and per S = W where recur has
    /// --shards) with the fields the issue names, efficiency 1 at W = 1, and the bounds.
    func testBenchScalingManyNodePart() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("recur-bench-many-\(getpid())")
        defer { try? FileManager.default.removeItem(at: out) }
        let run = try runScript("scripts/bench-scaling", [
            "--only", "many", "--out", out.path, "--no-plots", "--idle-wait", "0", "--repeats", "0",
            "--many-workers", "1,2", "--many-models", "1x16", "--many-batch", "4", "--many-link", "10gbit",
            "--many-compute-ms", "20", "--many-steps", "2", "--many-warmup", "1", "--many-budget", "120",
        ], seconds: 120)
        let lines = run.output.split(separator: "\n").map(String.init)
        if let skipped = lines.first(where: { $0.hasPrefix("SKIPPED:") }) {
            print(skipped)
            XCTAssertEqual(run.status, 0, "bench-scaling skipped but exited \(run.status)")
            return
        }
        if run.timedOut || run.status != 0 { print(lines.suffix(40).joined(separator: "\n")) }
        XCTAssertFalse(run.timedOut, "bench-scaling --only many did not finish in time")
        XCTAssertEqual(run.status, 0, "bench-scaling --only many failed")

        let data = try Data(contentsOf: out.appendingPathComponent("summary.json"))
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        let sharded = lines.contains { $0.contains("S = W runs skipped") } ? 0 : 1
        XCTAssertEqual(rows.count, 2 + sharded, "one row per W and S: \(rows)")
        for row in rows {
            for field in ["W", "S", "model", "link_gbit", "emulated", "efficiency", "communicate_ms", "wait_ms",
                          "bound_sharded_ms", "bound_single_ms", "step_ms", "compute_ms", "cpu_busy"] {
                XCTAssertNotNil(row[field], "summary.json row lacks \(field): \(row)")
            }
            XCTAssertEqual(row["emulated"] as? Bool, true)
            XCTAssertEqual(row["model"] as? String, "LSTM 1×16")
            // JSON numbers come as NSNumber, whole or not.
            func number(_ field: String) throws -> Double { try XCTUnwrap(row[field] as? NSNumber, field).doubleValue }
            XCTAssertEqual(try number("link_gbit"), 10)
            let w = Int(try number("W"))
            let efficiency = try number("efficiency")
            XCTAssertTrue(efficiency > 0 && efficiency.isFinite, "efficiency \(efficiency)")
            if w == 1 { XCTAssertEqual(efficiency, 1, accuracy: 1e-9, "W = 1 is the reference") }
            // M = 4·P bytes; the bounds are 2·W·M/B and 2·(W−1)/W·M/B at B = 10 Gbit/s.
            let m = try number("message_bytes"), b = 10e9 / 8
            XCTAssertEqual(try number("bound_single_ms"), 2 * Double(w) * m / b * 1e3, accuracy: 1e-3)
            XCTAssertEqual(try number("bound_sharded_ms"), 2 * Double(w - 1) / Double(w) * m / b * 1e3, accuracy: 1e-3)
            XCTAssertGreaterThanOrEqual(try number("compute_ms"), 20, "the emulated wait is in compute")
        }
        XCTAssertEqual(Set(rows.compactMap { ($0["W"] as? NSNumber)?.intValue }), [1, 2])
        let table = try String(contentsOf: out.appendingPathComponent("many.md"), encoding: .utf8)
        XCTAssertTrue(table.contains("LSTM 1×16 (emulated"), "the table labels its rows emulated:\n\(table)")
    }
}
