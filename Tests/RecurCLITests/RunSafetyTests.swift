import Foundation
import TestSupport
import XCTest

/// Issue 19, "ready for strangers": a run is never destroyed by a repeated or mistaken
/// command, every flag and combination is checked before anything starts, an interrupted run
/// says how to continue it, terminal output fits the terminal, secrets stay secret.
final class RunSafetyTests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-safety" }

    func run(_ arguments: [String]) throws -> BinaryRunner.Result {
        try recur.run(arguments, in: scratch.url)
    }

    /// Every file under `path` (a checkpoint directory or the folder beside it), by relative
    /// path, with its bytes; symlinks as their targets.
    static func tree(_ path: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let manager = FileManager.default
        for name in try manager.subpathsOfDirectory(atPath: path.path).sorted() {
            let url = path.appendingPathComponent(name)
            if let target = try? manager.destinationOfSymbolicLink(atPath: url.path) {
                files[name] = Data(("-> " + target).utf8)
                continue
            }
            var isDirectory: ObjCBool = false
            if manager.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[name] = try Data(contentsOf: url)
            }
        }
        return files
    }

    private var trainFlags: [String] {
        ["train", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq", "8", "--workers", "1",
         "--sample-length", "0", "--eval-every", "10", "--eval-chars", "2000", "--checkpoint", scratch.child("ck/ow").path]
    }

    // MARK: Repeated commands

    func testTheSameCommandTwiceKeepsTheFirstRunAndForceMovesItAside() throws {
        let first = try run(trainFlags + ["--steps", "30"])
        XCTAssertEqual(first.status, 0, first.all)
        let folder = scratch.child("ck")
        let before = try Self.tree(folder)
        XCTAssertNotNil(before.keys.first { $0.hasPrefix("ow-step-") }, "no named checkpoint: \(before.keys.sorted())")
        XCTAssertNotNil(before["ow-best"])

        // Up-arrow and Enter, with fewer steps: refused, nothing touched.
        let again = try run(trainFlags + ["--steps", "5"])
        assertOneLineError(again, mentions: [scratch.child("ck/ow").path, "step 30", "--resume", "--force"], status: 73)
        XCTAssertEqual(try Self.tree(folder), before, "a refused run changed the earlier run's files")

        // --force: the new run trains; the earlier one, best checkpoint included, is kept aside.
        let forced = try run(trainFlags + ["--steps", "5", "--force"])
        XCTAssertEqual(forced.status, 0, forced.all)
        let entries = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        let aside = try XCTUnwrap(entries.first { $0.hasPrefix("ow.replaced-") }, "nothing moved aside: \(entries)")
        XCTAssertTrue(forced.standardOutput.contains(aside), forced.all)
        XCTAssertEqual(try Self.tree(folder.appendingPathComponent(aside)), before, "the earlier run was not kept as it was")
        XCTAssertNotNil(try? Data(contentsOf: folder.appendingPathComponent("ow/model.safetensors")))

        // The moved run still resumes.
        let resumed = try run(["train", "--resume", folder.appendingPathComponent(aside).appendingPathComponent("ow").path,
                               "--steps", "32", "--sample-length", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertTrue(resumed.standardOutput.contains("step 32/32"), resumed.all)
    }

    func testAnInterruptedRunSaysTheCommandThatResumesIt() throws {
        let checkpoint = scratch.child("my run").path
        let process = Process()
        process.executableURL = recur.executable
        process.arguments = ["train", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq", "8", "--workers", "1",
                             "--steps", "1000000", "--sample-length", "0", "--print-every", "1", "--checkpoint", checkpoint, "--force"]
        process.currentDirectoryURL = scratch.url
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let reader = output.fileHandleForReading
        var text = ""
        while !text.contains("step 3/") {
            let chunk = reader.availableData
            guard !chunk.isEmpty else { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGINT)
        text += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 130, text)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("resume with: ") }, text)
        let command = String(line.dropFirst("resume with: ".count))
        XCTAssertTrue(command.contains("train --resume '\(checkpoint)'"), command)
        XCTAssertFalse(command.contains("--force"), command)

        // The printed command, run by a shell (with a small --steps added), continues the run.
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: checkpoint).appendingPathComponent("state.json"))) as? [String: Any]
        let step = try XCTUnwrap(saved?["step"] as? Int)
        let shell = try ProcessRunner.run(URL(fileURLWithPath: "/bin/sh"), ["-c", command + " --steps \(step + 2)"], in: scratch.url, timeout: 60)
        XCTAssertEqual(shell.status, 0, shell.all)
        XCTAssertTrue(shell.standardOutput.contains("steps \(step + 1)…\(step + 2)"), shell.all)
    }

    // MARK: Checked before anything starts

    /// Every process `recur` runs, from strace's execve trace: the command itself and any
    /// worker or shard it started.
    private func executions(_ arguments: [String]) throws -> (BinaryRunner.Result, [String]) {
        let trace = scratch.child("trace-\(UUID().uuidString)").path
        let result = try ProcessRunner.run(URL(fileURLWithPath: "/usr/bin/strace"),
                                           ["-f", "-qq", "-e", "trace=execve", "-o", trace, recur.executable.path] + arguments,
                                           in: scratch.url, timeout: 60)
        let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").map(String.init)
        return (result, lines.filter { $0.contains("execve(") })
    }

    func testProcessCountsAreRefusedBeforeAnyProcessStarts() throws {
        let cases: [([String], String)] = [
            (["--shards", "100000"], "--shards 100000"),
            (["--workers", "100000"], "--workers 100000"),
            (["--workers", "300", "--batch", "300", "--chunk", "1", "--seq", "4"], "at most 256"),
            (["--shards", "8", "--layers", "1"], "at most 5 shards"),
            (["--workers", "5", "--batch", "16", "--chunk", "4"], "--workers 5"),
        ]
        for (flags, mention) in cases {
            let (result, executions) = try executions(["train", "--hidden", "8", "--steps", "1", "--sample-length", "0",
                                                       "--checkpoint", ""] + flags)
            XCTAssertEqual(result.status, 64, "\(flags): \(result.all)")
            XCTAssertTrue(result.standardError.contains(mention), "\(flags) should mention \(mention): \(result.all)")
            XCTAssertEqual(result.errorLines.count, 1, result.all)
            XCTAssertEqual(executions.count, 1, "\(flags) started processes:\n\(executions.joined(separator: "\n"))")
        }
        // The control: a run that is allowed does start its shard and worker processes.
        let (allowed, started) = try executions(["train", "--hidden", "8", "--layers", "1", "--steps", "1", "--sample-length", "0",
                                                 "--checkpoint", "", "--workers", "2", "--shards", "2", "--batch", "8", "--seq", "8"])
        XCTAssertEqual(allowed.status, 0, allowed.all)
        XCTAssertEqual(started.count, 5, started.joined(separator: "\n"))
    }

    func testBadCombinationsExit64() throws {
        assertOneLineError(try run(["train", "--hidden", "100000", "--layers", "10"]), mentions: ["--hidden 100000", "memory"], status: 64)
        assertOneLineError(try run(["work", "--connect", "bogus://x"]), mentions: ["--connect bogus://x"], status: 64)
        assertOneLineError(try run(["serve", "--bind", "tcp://127.0.0.1:0"]), mentions: ["--bind", "port"], status: 64)
        assertOneLineError(try run(["train", "--bidirectional", "--steps", "1"]), mentions: ["--task classify"], status: 64)
        assertOneLineError(try run(["serve", "--workers", "5", "--batch", "16", "--chunk", "4", "--checkpoint", ""]),
                           mentions: ["--workers 5", "chunks"], status: 64)
    }

    // MARK: Terminal output

    func testProgressLinesFitSixtyColumns() throws {
        let flags = ["train", "--hidden", "16", "--layers", "1", "--workers", "2", "--steps", "6", "--print-every", "1",
                     "--sample-length", "0", "--checkpoint", ""]
        // No terminal: COLUMNS.
        let piped = try ProcessRunner.run(recur.executable, flags, in: scratch.url, timeout: 60, environment: ["COLUMNS": "60"])
        XCTAssertEqual(piped.status, 0, piped.all)
        let progress = piped.standardOutput.split(separator: "\n").filter { $0.hasPrefix("step ") && $0.contains(" | loss ") }
        XCTAssertEqual(progress.count, 6, piped.all)
        for line in progress { XCTAssertLessThanOrEqual(line.count, 60, String(line)) }
        // A terminal of 60 columns (script(1) gives it a pty; stty sets the width).
        let command = "stty cols 60; COLUMNS=200 '\(recur.executable.path)' " + flags.map { "'\($0)'" }.joined(separator: " ")
        let terminal = try ProcessRunner.run(URL(fileURLWithPath: "/usr/bin/script"), ["-qfec", command, "/dev/null"],
                                             in: scratch.url, timeout: 60)
        XCTAssertEqual(terminal.status, 0, terminal.all)
        // A pty ends lines with CR LF, which Swift counts as one Character: split on scalars.
        let frames = terminal.standardOutput.replacingOccurrences(of: "\u{1B}[K", with: "")
            .unicodeScalars.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).map { String(String.UnicodeScalarView($0)) }
            .filter { $0.hasPrefix("step ") && $0.contains(" | loss ") }
        XCTAssertFalse(frames.isEmpty, terminal.all)
        for frame in frames { XCTAssertLessThanOrEqual(frame.count, 60, String(frame)) }
    }

    func testEveryHelpFitsEightyColumns() throws {
        for command in [[], ["train"], ["serve"], ["work"], ["shard"], ["sample"], ["eval"], ["predict"], ["summary"], ["bench"], ["keygen"], ["launch"]] {
            let result = try run(command + ["--help"])
            XCTAssertEqual(result.status, 0, result.all)
            for line in result.standardOutput.split(separator: "\n") {
                XCTAssertLessThanOrEqual(line.count, 80, "recur \(command.joined()) --help: \(line)")
            }
            XCTAssertNil(result.standardOutput.range(of: #"\(default: [^)]*\)\.? *\(default:"#, options: .regularExpression),
                         "a default said twice in recur \(command.joined()) --help")
        }
        let version = try run(["--version"])
        XCTAssertEqual(version.status, 0, version.all)
        XCTAssertTrue(version.standardOutput.hasPrefix("recur "), version.all)
    }

    // MARK: Secrets

    func testKeysAndTokensStaySecret() throws {
        let keys = scratch.child("keys").path
        XCTAssertEqual(try run(["keygen", "--out", keys]).status, 0)
        let secret = try Data(contentsOf: URL(fileURLWithPath: keys + "/recur.key"))
        assertOneLineError(try run(["keygen", "--out", keys]), mentions: ["recur.key", "--force"], status: 73)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: keys + "/recur.key")), secret, "keygen replaced the secret key")
        XCTAssertEqual(try run(["keygen", "--out", keys, "--force"]).status, 0)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: keys + "/recur.key")), secret)

        assertOneLineError(try run(["work", "--connect", "tcp://127.0.0.1:5999", "--token-file", scratch.child("none").path]),
                           mentions: ["--token-file", "none"], status: 64)
    }

    // MARK: Small ones

    /// A resumed run appends to its own log and says how many steps it ran; eval scores the
    /// checkpoint's own corpus without --data.
    func testResumedRunKeepsItsLogAndEvalReadsTheCheckpointsCorpus() throws {
        let corpus = scratch.child("corpus.txt")
        try Data(CLITests.corpusText.utf8).write(to: corpus)
        let log = scratch.child("run.jsonl").path
        let flags = ["--hidden", "16", "--layers", "1", "--batch", "4", "--seq", "8", "--workers", "1", "--sample-length", "0"]
        let first = try run(["train", "--data", corpus.path, "--steps", "10", "--checkpoint", scratch.child("ck").path,
                             "--log-jsonl", log] + flags)
        XCTAssertEqual(first.status, 0, first.all)
        XCTAssertTrue(first.standardOutput.contains("done: 10 steps in"), first.all)
        let resumed = try run(["train", "--resume=\(scratch.child("ck").path)", "--steps", "14", "--workers", "1", "--sample-length", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertTrue(resumed.standardOutput.contains("done: 4 steps (steps 11…14)"), resumed.all)
        let steps = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("\"kind\":\"step\"") }.count
        XCTAssertEqual(steps, 14, "the resumed run did not append its 4 steps to the run's log")

        let evaluated = try run(["eval", "--checkpoint", scratch.child("ck").path])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        XCTAssertTrue(evaluated.standardOutput.hasPrefix("validation loss "), evaluated.all)
        let named = try run(["eval", "--checkpoint", scratch.child("ck").path, "--data", corpus.path])
        XCTAssertEqual(named.standardOutput, evaluated.standardOutput, "the default is not the checkpoint's corpus")
    }

    /// A classifier's confusion matrix has column headers, and scripts/plot draws its loss per
    /// example and its accuracy.
    func testClassifierTableHeadersAndCurve() throws {
        let log = scratch.child("classify.jsonl").path
        let trained = try run(["train", "--task", "classify", "--hidden", "8", "--layers", "1", "--batch", "8", "--steps", "6",
                               "--eval-every", "3", "--workers", "1", "--checkpoint", scratch.child("cls").path, "--log-jsonl", log])
        XCTAssertEqual(trained.status, 0, trained.all)
        let lines = trained.standardOutput.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.firstIndex { $0.contains("confusion: true class by row, predicted class by column") }, trained.all)
        let columns = lines[header + 1].split(separator: " ").map(String.init)
        XCTAssertEqual(columns, (0..<columns.count).map(String.init), lines[header + 1])
        XCTAssertTrue(lines[header + 2].hasPrefix("0 "), lines[header + 2])

        guard let root = ProcessRunner.packageRoot() else { return XCTFail("no package root") }
        let plotted = try ProcessRunner.run(root.appendingPathComponent("scripts/plot"), [log, "-o", scratch.child("c.png").path],
                                            in: scratch.url, timeout: 120)
        XCTAssertEqual(plotted.status, 0, plotted.all)
        XCTAssertTrue(plotted.standardOutput.contains("loss per example and validation accuracy"), plotted.all)
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.child("c.png").path))
    }
}
