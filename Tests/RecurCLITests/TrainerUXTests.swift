import Foundation
import TestSupport
import XCTest

/// Issue 12, "a trainer people can live with", as a user meets it: output paths checked
/// before the first step, negative values, exit codes by kind, one flag name per concept,
/// resume from the checkpoint's own config, another run's checkpoint, progress lines, the
/// JSONL curve records, sampling, eval of a whole file, summary of a checkpoint, scripts/train.
final class TrainerUXTests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-ux" }

    static let model = ["--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq", "8"]

    func run(_ arguments: [String]) throws -> BinaryRunner.Result {
        try recur.run(arguments, in: scratch.url)
    }

    func corpus() throws -> String {
        let path = scratch.child("corpus.txt")
        if !FileManager.default.fileExists(atPath: path.path) { try Data(CLITests.corpusText.utf8).write(to: path) }
        return path.path
    }

    /// `recur train` on the test corpus, in-process, no sample unless asked.
    func train(_ flags: [String], checkpoint: String = "ckpt") throws -> BinaryRunner.Result {
        try run(["train", "--data", try corpus()] + Self.model + ["--workers", "1", "--threads", "2", "--sample-length", "0",
                                                                 "--checkpoint", scratch.child(checkpoint).path] + flags)
    }

    func bytes(_ checkpoint: String, _ file: String = "model.safetensors") throws -> Data {
        try Data(contentsOf: scratch.child(checkpoint).appendingPathComponent(file))
    }

    // MARK: Output paths, values, exit codes

    func testUnusableCheckpointDirectoryFailsBeforeReadingTheCorpus() throws {
        for flag in ["--checkpoint", "--checkpoint-dir"] {
            // A corpus that does not exist: the output path is checked first.
            let result = try run(["train", flag, "/proc/x", "--data", scratch.child("missing.txt").path])
            assertOneLineError(result, mentions: ["--checkpoint /proc/x"], status: 73)
            XCTAssertFalse(result.standardError.contains("missing.txt"), result.all)
            XCTAssertEqual(result.standardOutput, "", result.all)
        }
        let file = scratch.child("afile")
        try Data("x".utf8).write(to: file)
        assertOneLineError(try train([], checkpoint: "afile/sub"), mentions: ["afile/sub"], status: 73)
    }

    func testNegativeNumbersAreValues() throws {
        let corpus = try corpus()
        assertOneLineError(try run(["train", "--data", corpus, "--lr", "-1"]), mentions: ["--lr must be positive, got -1"], status: 64)
        assertOneLineError(try run(["train", "--data", corpus, "--clip", "-0.5"]), mentions: ["--clip must be ≥ 0", "-0.5"], status: 64)
        assertOneLineError(try run(["sample", "--checkpoint", "x", "--temperature", "-1"]), mentions: ["--temperature must be positive"], status: 64)
        assertOneLineError(try run(["sample", "--checkpoint", "x", "--top-p", "-.5"]), mentions: ["--top-p must be in (0, 1]"], status: 64)
    }

    /// One exit code per kind: 64 for any bad flag value (whoever checks it), 65 for unusable
    /// input, 73 for an unusable output path.
    func testOneExitCodePerKindOfError() throws {
        let corpus = try corpus()
        for flags in [["--batch", "0"], ["--steps", "0"], ["--layers", "0"], ["--batch", "8", "--chunk", "3"],
                      ["--val-fraction", "1"], ["--cell", "foo"], ["--bogus"]] {
            let result = try run(["train", "--data", corpus, "--workers", "1", "--checkpoint", ""] + flags)
            assertOneLineError(result, mentions: [], status: 64)
        }
        let empty = scratch.child("empty.txt")
        try Data().write(to: empty)
        for path in [empty.path, scratch.child("missing.txt").path] {
            assertOneLineError(try run(["train", "--data", path, "--checkpoint", ""]), mentions: [path], status: 65)
        }
        assertOneLineError(try run(["sample", "--checkpoint", scratch.child("none").path]), mentions: ["none"], status: 65)
        assertOneLineError(try run(["train", "--data", corpus, "--log-jsonl", "/nonexistent/log.jsonl", "--checkpoint", ""]),
                           mentions: ["/nonexistent/log.jsonl"], status: 73)
    }

    // MARK: One name per concept, grouped help, summary

    func testOneFlagNamePerConceptAndGroupedHelp() throws {
        let help = try run(["train", "--help"]).standardOutput
        for group in ["MODEL:", "DATA:", "OPTIMIZATION:", "PARALLELISM:", "CHECKPOINTS:", "OUTPUT:", "SAMPLING:"] {
            XCTAssertTrue(help.contains(group), "train --help lacks \(group)\n\(help)")
        }
        XCTAssertTrue(help.contains("--checkpoint <"), help)
        XCTAssertFalse(help.contains("--checkpoint-dir"), "the old spelling is a hidden alias\n\(help)")
        let serve = try run(["serve", "--help"]).standardOutput
        XCTAssertFalse(serve.contains("in-process"), "serve's --workers is not train's\n\(serve)")
        XCTAssertFalse(serve.contains("--threads"), serve)
        for command in ["sample", "train", "serve"] {
            let text = try run([command, "--help"]).standardOutput
            XCTAssertTrue(text.contains("--sample-length"), "\(command) --help\n\(text)")
            XCTAssertTrue(text.contains("--checkpoint <"), "\(command) --help\n\(text)")
        }
    }

    func testSummaryOfACheckpoint() throws {
        XCTAssertEqual(try train(["--steps", "2"]).status, 0)
        let result = try run(["summary", "--checkpoint", scratch.child("ckpt").path])
        XCTAssertEqual(result.status, 0, result.all)
        let table = try run(["summary", "--cell", "lstm", "--hidden", "16", "--layers", "1", "--data", try corpus()])
        XCTAssertTrue(result.standardOutput.hasPrefix(table.standardOutput.trimmingCharacters(in: .newlines)), result.all + table.all)
        XCTAssertTrue(result.standardOutput.contains("step 2 of 2"), result.all)
        assertOneLineError(try run(["summary", "--checkpoint", scratch.child("ckpt").path, "--hidden", "8"]),
                           mentions: ["--checkpoint"], status: 64)
    }

    // MARK: Resume

    /// `--resume DIR --steps N --lr L` needs nothing else, and 6 + 4 resumed steps give the
    /// bytes of 10 uninterrupted ones.
    func testResumeReadsTheCheckpointsOwnConfig() throws {
        XCTAssertEqual(try train(["--steps", "10"], checkpoint: "whole").status, 0)
        XCTAssertEqual(try train(["--steps", "6"], checkpoint: "part").status, 0)
        let resumed = try run(["train", "--resume", scratch.child("part").path, "--steps", "10", "--workers", "1", "--sample-length", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertTrue(resumed.standardOutput.contains("steps 7…10"), resumed.all)
        for file in ["model.safetensors", "optimizer.safetensors", "hidden.safetensors"] {
            XCTAssertEqual(try bytes("part", file), try bytes("whole", file), file)
        }
        // A new learning rate is taken; the run goes on from step 10.
        let faster = try run(["train", "--resume", scratch.child("part").path, "--steps", "12", "--lr", "0.01",
                              "--workers", "1", "--sample-length", "0"])
        XCTAssertEqual(faster.status, 0, faster.all)
        XCTAssertTrue(faster.standardOutput.contains("step 12/12 | loss"), faster.all)
        XCTAssertTrue(faster.standardOutput.contains("lr 1.0e-02"), faster.all)
    }

    func testResumeRefusesModelFlagsAndSaysWhenThereIsNothingToDo() throws {
        XCTAssertEqual(try train(["--steps", "3"]).status, 0)
        let directory = scratch.child("ckpt").path
        let before = try CLITests.snapshot(directory)
        for (flags, flag) in [(["--hidden", "24"], "--hidden 24"), (["--batch", "8"], "--batch 8"), (["--seed", "7"], "--seed 7"),
                              (["--optimizer", "sgd"], "--optimizer sgd")] {
            let result = try run(["train", "--resume", directory, "--steps", "5"] + flags)
            assertOneLineError(result, mentions: [flag, directory], status: 64)
        }
        let finished = try run(["train", "--resume", directory])
        XCTAssertEqual(finished.status, 0, finished.all)
        XCTAssertTrue(finished.standardOutput.contains("nothing to do"), finished.all)
        XCTAssertFalse(finished.standardOutput.contains("tok/s"), finished.all)
        XCTAssertEqual(try CLITests.snapshot(directory), before, "checkpoint files changed")
    }

    func testAnotherRunsCheckpointIsNotOverwrittenWithoutForce() throws {
        XCTAssertEqual(try train(["--steps", "2"]).status, 0)
        let before = try bytes("ckpt")
        let other = try run(["train", "--data", try corpus(), "--hidden", "8", "--layers", "1", "--batch", "4", "--seq", "8",
                             "--steps", "2", "--workers", "1", "--sample-length", "0", "--checkpoint", scratch.child("ckpt").path])
        assertOneLineError(other, mentions: ["holds the checkpoint of a run", "--force", "--resume"], status: 73)
        XCTAssertEqual(try bytes("ckpt"), before)
        let forced = try run(["train", "--data", try corpus(), "--hidden", "8", "--layers", "1", "--batch", "4", "--seq", "8",
                              "--steps", "2", "--workers", "1", "--sample-length", "0", "--checkpoint", scratch.child("ckpt").path, "--force"])
        XCTAssertEqual(forced.status, 0, forced.all)
        XCTAssertNotEqual(try bytes("ckpt"), before)
    }

    // MARK: Progress, curves, sampling

    func testProgressLinesFitAndLogCarriesEvaluations() throws {
        let log = scratch.child("log.jsonl").path
        let result = try train(["--steps", "12", "--print-every", "4", "--eval-every", "6", "--log-jsonl", log])
        XCTAssertEqual(result.status, 0, result.all)
        let steps = result.standardOutput.split(separator: "\n").filter { $0.hasPrefix("step ") && $0.contains(" | loss ") }
        XCTAssertEqual(steps.map { $0.split(separator: " ")[1] }, ["1/12", "4/12", "8/12", "12/12"], result.all)
        for line in result.standardOutput.split(separator: "\n") where line.hasPrefix("step ") {
            XCTAssertLessThanOrEqual(line.count, 100, String(line))
        }
        let records = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let evaluations = records.filter { $0["kind"] as? String == "evaluation" }
        XCTAssertEqual(evaluations.compactMap { $0["step"] as? Int }, [6, 12])
        for e in evaluations {
            let nats = try XCTUnwrap(e["validationLoss"] as? Double), bits = try XCTUnwrap(e["validationBitsPerCharacter"] as? Double)
            XCTAssertEqual(bits, nats / log2e_inverse, accuracy: 1e-9)
            XCTAssertNotNil(e["time"] as? Double)
        }
        XCTAssertEqual(records.filter { $0["kind"] as? String == "step" }.count, 12)
    }

    private var log2e_inverse: Double { 0.6931471805599453 }

    func testSamplingFlags() throws {
        XCTAssertEqual(try train(["--steps", "20", "--lr", "0.02"]).status, 0)
        let base = ["sample", "--checkpoint", scratch.child("ckpt").path, "--sample-length", "80", "--seed", "5"]
        let argmax = try run(base + ["--argmax"])
        XCTAssertEqual(argmax.status, 0, argmax.all)
        XCTAssertEqual(try run(base + ["--top-k", "1"]).standardOutput, argmax.standardOutput, "top-k 1 is argmax")
        XCTAssertEqual(try run(base + ["--top-p", "0.000001"]).standardOutput, argmax.standardOutput, "a tiny top-p is argmax")
        XCTAssertEqual(try run(base + ["--length", "80", "--argmax"]).standardOutput, argmax.standardOutput, "--length is an alias")
        let free = try run(base).standardOutput
        XCTAssertNotEqual(free, argmax.standardOutput)
        let stopped = try run(base + ["--stop", " "])
        XCTAssertEqual(stopped.status, 0, stopped.all)
        let text = stopped.standardOutput.dropLast()   // print's newline
        XCTAssertTrue(text.hasSuffix(" "), stopped.all)
        XCTAssertEqual(text.filter { $0 == " " }.count, 1, stopped.all)
        XCTAssertTrue(free.hasPrefix(String(text)), "stopping cuts the same draw short")
        assertOneLineError(try run(base + ["--stop", "Ω"]), mentions: ["Ω"], status: 65)
    }

    func testSamplesDuringTraining() throws {
        let result = try train(["--steps", "9", "--sample-every", "4", "--sample-length", "30"])
        XCTAssertEqual(result.status, 0, result.all)
        for label in ["sample at step 4:", "sample at step 8:", "sample:"] {
            XCTAssertTrue(result.standardOutput.contains(label), result.all)
        }
        XCTAssertFalse(result.standardOutput.contains("sample at step 9"), result.all)
    }

    // MARK: eval --all

    func testEvalAllScoresTheWholeFile() throws {
        XCTAssertEqual(try train(["--steps", "2"]).status, 0)
        let text = "the cat sat on a mat.\nthe dog ran to the big red hat.\n"
        let file = scratch.child("other.txt")
        try Data((text + "Ω").utf8).write(to: file)
        let result = try run(["eval", "--checkpoint", scratch.child("ckpt").path, "--data", file.path, "--all"])
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("over \(text.count - 1) chars"), result.all)
        XCTAssertTrue(result.standardError.contains("skipped 1 characters"), result.all)
    }

    // MARK: scripts/train

    /// Relative paths are the caller's: the corpus, the checkpoint, its log and its curve
    /// are in the directory the script was run from.
    func testTrainScriptResolvesPathsFromTheCallersDirectory() throws {
        let root = try XCTUnwrap(ProcessRunner.packageRoot())
        try Data(CLITests.corpusText.utf8).write(to: scratch.child("input.txt"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("scripts/train").path, "--data", "input.txt", "--checkpoint", "out/ckpt",
                             "--steps", "3", "--workers", "1", "--sample-length", "0"] + Self.model
        process.currentDirectoryURL = scratch.url
        var environment = ProcessInfo.processInfo.environment
        environment["RECUR_BINARY"] = recur.executable.path
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, printed)
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.child("out/ckpt/model.safetensors").path), printed)
        let log = try String(contentsOf: scratch.child("out/ckpt.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 4, log)
        // The curve beside it (scripts/plot; scripts/test installs matplotlib).
        let png = try Data(contentsOf: scratch.child("out/ckpt.png"))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], printed)
    }
}

extension TrainerUXTests {
    /// Evaluations every 2 steps: the best is kept as DIR-step-S-val-L (DIR-best links it),
    /// with --keep 1 one recent other, and --early-stop 2 ends the run after two evaluations
    /// without a better loss (this seed and rate get there before step 100).
    func testBestCheckpointsAndEarlyStop() throws {
        let log = scratch.child("log.jsonl").path
        let result = try train(["--steps", "100", "--lr", "0.05", "--eval-every", "2", "--keep", "1", "--early-stop", "2",
                                "--log-jsonl", log], checkpoint: "run")
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("early stop at step"), result.all)
        let evaluations = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["kind"] as? String == "evaluation" }
        let losses = evaluations.compactMap { $0["validationLoss"] as? Double }
        let steps = evaluations.compactMap { $0["step"] as? Int }
        XCTAssertEqual(losses.count, steps.count)
        XCTAssertLessThan(steps.last!, 100)
        // Stopped exactly when two evaluations in a row brought no new best, not before.
        let best = losses.dropLast(2).min()!
        XCTAssertTrue(losses.suffix(2).allSatisfy { $0 >= best }, "\(losses)")
        for end in 3..<losses.count - 1 {
            let earlier = losses[..<(end - 1)].min()!
            XCTAssertFalse(losses[end - 1] >= earlier && losses[end] >= earlier, "should have stopped at \(steps[end]): \(losses)")
        }
        let bestIndex = losses.firstIndex(of: losses.min()!)!
        let bestName = String(format: "run-step-%06d-val-%.4f", steps[bestIndex], losses[bestIndex])
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.child("run-best").path), bestName)
        let named = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.hasPrefix("run-step-") }.sorted()
        let last = String(format: "run-step-%06d-val-%.4f", steps.last!, losses.last!)
        XCTAssertEqual(named, [bestName, last].sorted(), "the best and --keep 1 recent one")
        let sample = try run(["sample", "--checkpoint", scratch.child("run-best").path, "--sample-length", "10"])
        XCTAssertEqual(sample.status, 0, sample.all)
    }
}

extension TrainerUXTests {
    /// --dropout 0.2 on two layers: --workers 1 --threads 2, --workers 2 (processes), and
    /// 5 + resume + 5 steps give the same bytes; without dropout they differ.
    func testDropoutIsExactForEveryWorkerSplitAndResume() throws {
        let corpus = try corpus()
        let model = ["--cell", "lstm", "--hidden", "16", "--layers", "2", "--batch", "4", "--seq", "8", "--sample-length", "0"]
        func train(_ name: String, _ flags: [String]) throws {
            let result = try run(["train", "--data", corpus, "--checkpoint", scratch.child(name).path] + model + flags)
            XCTAssertEqual(result.status, 0, result.all)
        }
        try train("threads", ["--dropout", "0.2", "--steps", "10", "--workers", "1", "--threads", "2"])
        try train("workers", ["--dropout", "0.2", "--steps", "10", "--workers", "2", "--threads", "1"])
        try train("resumed", ["--dropout", "0.2", "--steps", "5", "--workers", "1", "--threads", "1"])
        let resumed = try run(["train", "--resume", scratch.child("resumed").path, "--steps", "10", "--workers", "1",
                               "--sample-length", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        try train("plain", ["--steps", "10", "--workers", "1", "--threads", "2"])
        for file in ["model.safetensors", "optimizer.safetensors", "hidden.safetensors"] {
            XCTAssertEqual(try bytes("workers", file), try bytes("threads", file), file)
            XCTAssertEqual(try bytes("resumed", file), try bytes("threads", file), file)
        }
        XCTAssertNotEqual(try bytes("plain"), try bytes("threads"), "dropout changes the weights")
        let state = try String(contentsOf: scratch.child("threads/state.json"), encoding: .utf8)
        XCTAssertTrue(state.contains("\"dropout\":0.2"), state)
        // A resumed run keeps its dropout.
        assertOneLineError(try run(["train", "--resume", scratch.child("threads").path, "--steps", "12", "--dropout", "0.5"]),
                           mentions: ["--dropout 0.5"], status: 64)
    }
}

extension TrainerUXTests {
    /// --eval-chars caps what an evaluation scores (its first characters), and says so.
    func testEvalCharsCapsTheValidation() throws {
        let result = try train(["--steps", "2", "--eval-chars", "100"])
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("evaluations score the first 100, --eval-chars"), result.all)
        XCTAssertTrue(result.standardOutput.contains("step 2 validation loss"), result.all)
        XCTAssertTrue(result.standardOutput.contains("over 99 chars"), result.all)
        let whole = try train(["--steps", "2", "--eval-chars", "0"], checkpoint: "whole")
        XCTAssertFalse(whole.standardOutput.contains("over 99 chars"), whole.all)
        XCTAssertFalse(whole.standardOutput.contains("--eval-chars"), whole.all)
    }
}

extension TrainerUXTests {
    /// --init-from DIR takes the model, data and optimizer of the checkpoint with no other
    /// flag, and starts a new run (step 1) from its weights.
    func testInitFromTakesTheCheckpointsConfig() throws {
        XCTAssertEqual(try train(["--steps", "3"]).status, 0)
        let result = try run(["train", "--init-from", scratch.child("ckpt").path, "--steps", "2", "--workers", "1",
                              "--sample-length", "0", "--checkpoint", scratch.child("new").path])
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("steps 1…2"), result.all)
        let old = try run(["summary", "--checkpoint", scratch.child("ckpt").path]).standardOutput
        let new = try run(["summary", "--checkpoint", scratch.child("new").path]).standardOutput
        XCTAssertEqual(old.split(separator: "\n").dropLast(), new.split(separator: "\n").dropLast(), "same model table")
    }

    /// --verbose prints the epoch (and the worker split) under each printed progress line.
    func testVerboseAddsDetailLines() throws {
        let result = try train(["--steps", "4", "--verbose", "--print-every", "2"])
        XCTAssertEqual(result.status, 0, result.all)
        let lines = result.standardOutput.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.hasPrefix("step ") && $0.contains(" | loss ") }.count, 3, result.all)
        XCTAssertEqual(lines.filter { $0 == "  epoch 0" }.count, 3, result.all)
    }
}
