import Foundation
import TestSupport
import XCTest

/// The `recur` executable as a user meets it: exit codes, one-line errors, and a tiny
/// train → sample → eval → refused resume round, all in-process (`--workers 1`).
final class CLITests: RecurBinaryTestCase {

    func run(_ arguments: [String], in directory: URL? = nil) throws -> BinaryRunner.Result {
        try recur.run(arguments, in: directory ?? scratch.url)
    }

    // MARK: Fixtures

    /// ~5 KB of sentences over a small alphabet, the same every time.
    static let corpusText: String = {
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "hat", "sun"]
        var random = FixtureRandom(seed: 11)
        var text = ""
        while text.utf8.count < 5_000 {
            let length = 4 + random.index(5)
            text += (0..<length).map { _ in words[random.index(words.count)] }.joined(separator: " ") + ".\n"
        }
        return text
    }()

    func write(_ text: String, to name: String) throws -> String {
        let url = scratch.child(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// One tiny training run shared by the tests that need a checkpoint.
    struct TrainedRun {
        let directory: TemporaryDirectory
        let corpus: String
        let checkpoint: String
        let log: String
        let result: BinaryRunner.Result
    }

    static var trained: TrainedRun?

    override class func tearDown() {
        trained = nil
        super.tearDown()
    }

    static let modelFlags = ["--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch", "4", "--seq", "8"]

    func trainedRun() throws -> TrainedRun {
        if let trained = Self.trained { return trained }
        let directory = TemporaryDirectory("recur-cli-run")
        let corpus = directory.child("corpus.txt")
        try Data(Self.corpusText.utf8).write(to: corpus)
        let checkpoint = directory.child("ckpt").path, log = directory.child("log.jsonl").path
        let result = try recur.run(["train", "--data", corpus.path] + Self.modelFlags + [
            "--steps", "20", "--workers", "1", "--threads", "2",
            "--checkpoint-dir", checkpoint, "--log-jsonl", log, "--sample-length", "60",
        ], in: directory.url)
        let run = TrainedRun(directory: directory, corpus: corpus.path, checkpoint: checkpoint, log: log, result: result)
        Self.trained = run
        return run
    }

    // MARK: Help and summary

    func testHelpExitsZeroAndListsTheSubcommands() throws {
        let result = try run(["--help"])
        XCTAssertEqual(result.status, 0, result.all)
        for name in ["train", "sample", "eval", "summary", "bench"] {
            XCTAssertTrue(result.standardOutput.contains(name), "help should list \(name); \(result.all)")
        }
        let train = try run(["train", "--help"])
        XCTAssertEqual(train.status, 0, train.all)
        for flag in ["--data", "--cell", "--hidden", "--seq", "--batch", "--optimizer", "--clip", "--checkpoint <", "--resume"] {
            XCTAssertTrue(train.standardOutput.contains(flag), "train help should list \(flag)")
        }
    }

    /// Parameter counts per row of the table, by the row's first word.
    func summaryCounts(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Int] {
        let result = try run(["summary"] + arguments)
        XCTAssertEqual(result.status, 0, result.all, file: file, line: line)
        var counts: [String: Int] = [:]
        for row in result.standardOutput.split(separator: "\n") {
            let fields = row.split(separator: " ")
            guard let first = fields.first, let last = fields.last, let count = Int(last) else { continue }
            counts[String(first)] = count
        }
        return counts
    }

    func testSummaryCountsAreKeras() throws {
        // Keras: SimpleRNN(3) on 10 inputs has 3·(10+3) + 3 = 42; Dense(10) on 3 has 40.
        let rnn = try summaryCounts(["--cell", "rnn", "--layers", "1", "--hidden", "3", "--vocab", "10"])
        XCTAssertEqual(rnn["rnn_1"], 42)
        XCTAssertEqual(rnn["head"], 40)
        // LSTM 4·(H(D+H)+H), GRU 3·(H(D+H)+2H) (two biases); D = H above the first layer.
        let lstm = try summaryCounts(["--cell", "lstm", "--layers", "2", "--hidden", "3", "--vocab", "10"])
        XCTAssertEqual(lstm["lstm_1"], 4 * (3 * 13 + 3))
        XCTAssertEqual(lstm["lstm_2"], 4 * (3 * 6 + 3))
        XCTAssertEqual(lstm["head"], 40)
        let gru = try summaryCounts(["--cell", "gru", "--layers", "2", "--hidden", "3", "--vocab", "10"])
        XCTAssertEqual(gru["gru_1"], 3 * (3 * 13 + 2 * 3))
        XCTAssertEqual(gru["gru_2"], 3 * (3 * 6 + 2 * 3))
        XCTAssertEqual(gru["head"], 40)
        // The Total row adds them up (its first word is "Total").
        XCTAssertEqual(gru["Total"], 135 + 72 + 40)
    }

    // MARK: Bad flags

    func testBadFlagsGiveOneLineAndNonZeroExit() throws {
        let corpus = try write(Self.corpusText, to: "corpus.txt")
        let train = ["train", "--data", corpus, "--workers", "1", "--steps", "1", "--checkpoint-dir", scratch.child("ckpt").path]
        let cases: [([String], [String])] = [
            (["summary", "--layers", "0", "--vocab", "10"], ["layers"]),
            (train + ["--layers", "0"], ["layers"]),
            (["summary", "--cell", "foo"], ["foo"]),
            (train + ["--cell", "foo"], ["foo"]),
            (["summary", "--frobnicate", "3"], ["frobnicate"]),
            (train + ["--frobnicate"], ["frobnicate"]),
            (train + ["--lr", "-1"], ["lr"]),
            (train + ["--lr=-1"], ["lr"]),
            (train + ["--hidden", "0"], ["hidden"]),
            (train + ["--batch", "8", "--chunk", "3"], ["chunk"]),
            (train + ["--optimizer", "lbfgs"], ["lbfgs"]),
            (["sample", "--checkpoint", "x", "--temperature", "0"], ["temperature"]),
            (["frobnicate"], ["frobnicate"]),
        ]
        for (arguments, mentions) in cases {
            let result = try run(arguments)
            assertOneLineError(result, mentions: mentions)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.child("ckpt").path), "nothing written on bad flags")
    }

    // MARK: Data errors

    func testDataErrorsGiveOneLineNamingTheProblem() throws {
        let empty = try write("", to: "empty.txt")
        let short = try write("abc\n", to: "short.txt")
        let invalid = scratch.child("latin1.txt")
        try Data([0x63, 0x61, 0x66, 0xE9, 0x0A] + Array(repeating: 0x61, count: 200)).write(to: invalid)
        let missing = scratch.child("no-such-file.txt").path
        let cases: [(String, [String])] = [
            (empty, [empty, "empty"]),
            (invalid.path, [invalid.path, "UTF-8", "offset 3"]),
            (short, [short, "too short"]),
            (missing, [missing]),
        ]
        for (path, mentions) in cases {
            let result = try run(["train", "--data", path, "--hidden", "8", "--layers", "1", "--batch", "2", "--seq", "4",
                                  "--steps", "1", "--workers", "1", "--checkpoint-dir", scratch.child("ckpt").path])
            assertOneLineError(result, mentions: mentions)
        }
        // eval reads its file by the same rules.
        let run = try trainedRun()
        assertOneLineError(try self.run(["eval", "--checkpoint", run.checkpoint, "--data", empty]), mentions: [empty, "empty"])
        assertOneLineError(try self.run(["eval", "--checkpoint", run.checkpoint, "--data", missing]), mentions: [missing])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.child("ckpt").path))
    }

    // MARK: Train, sample, eval

    func testTrainPrintsSampleAndSummaryAndLogsEveryStep() throws {
        let run = try trainedRun()
        XCTAssertEqual(run.result.status, 0, run.result.all)
        let output = run.result.standardOutput
        XCTAssertTrue(output.contains("sample:"), output)
        XCTAssertTrue(output.contains("done: 20 steps"), output)
        XCTAssertTrue(output.contains("step 20/20"), output)
        let files = try FileManager.default.contentsOfDirectory(atPath: run.checkpoint).sorted()
        XCTAssertEqual(files, ["hidden.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"])

        let records = try String(contentsOfFile: run.log, encoding: .utf8).split(separator: "\n")
        let lines = records.filter { $0.contains("\"kind\":\"step\"") }
        XCTAssertEqual(lines.count, 20)
        XCTAssertEqual(records.count, 21, "20 steps and the final evaluation")
        for (index, line) in lines.enumerated() {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            XCTAssertEqual(object["step"] as? Int, index + 1, String(line))
            let loss = try XCTUnwrap(object["loss"] as? Double, String(line))
            XCTAssertTrue(loss.isFinite && loss > 0 && loss < 10, String(line))
        }
    }

    func testSampleIsReproducibleBySeed() throws {
        let run = try trainedRun()
        XCTAssertEqual(run.result.status, 0, run.result.all)
        let arguments = ["sample", "--checkpoint", run.checkpoint, "--length", "120"]
        let first = try self.run(arguments + ["--seed", "3"])
        let second = try self.run(arguments + ["--seed", "3"])
        let other = try self.run(arguments + ["--seed", "4"])
        for result in [first, second, other] {
            XCTAssertEqual(result.status, 0, result.all)
            XCTAssertEqual(result.standardError, "", result.all)
        }
        XCTAssertGreaterThanOrEqual(first.standardOutput.unicodeScalars.count, 120)
        XCTAssertEqual(first.standardOutput, second.standardOutput)
        XCTAssertNotEqual(first.standardOutput, other.standardOutput)
        let primed = try self.run(arguments + ["--seed", "3", "--prime", "the cat"])
        XCTAssertTrue(primed.standardOutput.hasPrefix("the cat"), primed.all)
    }

    /// eval scores the validation split with one stream: the figure `train` printed at the end.
    func testEvalPrintsTheTrainingRunsValidationLoss() throws {
        let run = try trainedRun()
        XCTAssertEqual(run.result.status, 0, run.result.all)
        let result = try self.run(["eval", "--checkpoint", run.checkpoint, "--data", run.corpus])
        XCTAssertEqual(result.status, 0, result.all)
        let n = Self.corpusText.unicodeScalars.count
        let validationTargets = n - Int((Double(n) * 0.9).rounded(.down)) - 1
        XCTAssertTrue(result.standardOutput.contains("nats/char"), result.all)
        XCTAssertTrue(result.standardOutput.contains("over \(validationTargets) chars"), result.all)
        let nats = try XCTUnwrap(Self.number(before: " nats/char", in: result.standardOutput), result.all)
        let bits = try XCTUnwrap(Self.number(before: " bits/char", in: result.standardOutput), result.all)
        XCTAssertEqual(bits, nats / log(2), accuracy: 1e-3)
        let trained = try XCTUnwrap(Self.number(before: " nats/char", in: run.result.standardOutput), run.result.all)
        XCTAssertEqual(nats, trained, "eval of the checkpoint = the run's final validation loss")
    }

    /// Unknown characters are skipped and counted with a warning, or refused with --unknown error.
    func testEvalNamesCharactersOutsideTheVocabulary() throws {
        let run = try trainedRun()
        let foreign = try write(Self.corpusText + "Ω and λλ.\n", to: "foreign.txt")
        let refused = try self.run(["eval", "--checkpoint", run.checkpoint, "--data", foreign, "--unknown", "error"])
        assertOneLineError(refused, mentions: ["Ω", "λ", "vocabulary"], status: 65)
        let skipped = try self.run(["eval", "--checkpoint", run.checkpoint, "--data", foreign])
        XCTAssertEqual(skipped.status, 0, skipped.all)
        XCTAssertEqual(skipped.errorLines.count, 1, skipped.all)
        for word in ["warning", "skipped 3 characters", "\"Ω\" ×1", "\"λ\" ×2"] {
            XCTAssertTrue(skipped.standardError.contains(word), "\(word): \(skipped.all)")
        }
        XCTAssertTrue(skipped.standardOutput.contains("validation loss"), skipped.all)
    }

    func testSampleFromAMissingCheckpointIsOneLine() throws {
        assertOneLineError(try run(["sample", "--checkpoint", "/nonexistent"]), mentions: ["/nonexistent"])
        assertOneLineError(try run(["eval", "--checkpoint", "/nonexistent", "--data", try write("abc", to: "x.txt")]),
                           mentions: ["/nonexistent"])
    }

    /// Resuming with another --hidden is refused in one line and leaves the checkpoint as it was.
    func testResumeWithAnotherModelIsRefusedAndLeavesTheCheckpoint() throws {
        let run = try trainedRun()
        XCTAssertEqual(run.result.status, 0, run.result.all)
        let before = try Self.snapshot(run.checkpoint)
        var flags = Self.modelFlags
        flags[flags.firstIndex(of: "16")!] = "24"
        let result = try self.run(["train", "--data", run.corpus] + flags + [
            "--steps", "40", "--workers", "1", "--threads", "1", "--checkpoint-dir", run.checkpoint, "--resume",
            "--sample-length", "0",
        ])
        assertOneLineError(result, mentions: ["hidden", "16", "24", run.checkpoint])
        XCTAssertEqual(try Self.snapshot(run.checkpoint), before, "checkpoint files changed")
        // --init-from with another model is refused the same way.
        let initFrom = try self.run(["train", "--data", run.corpus] + flags + [
            "--steps", "1", "--workers", "1", "--checkpoint-dir", scratch.child("fresh").path, "--init-from", run.checkpoint,
        ])
        assertOneLineError(initFrom, mentions: ["another model", run.checkpoint])
    }

    /// Paths a user can get wrong in a train command: each is one line, and none costs a
    /// training run first (no step line printed before the error).
    func testUnusableOutputPathsFailBeforeTraining() throws {
        let corpus = try write(Self.corpusText, to: "corpus.txt")
        let file = try write("not a directory\n", to: "afile")
        let base = ["train", "--data", corpus, "--hidden", "8", "--layers", "1", "--batch", "2", "--seq", "4",
                    "--steps", "3", "--workers", "1", "--sample-length", "0"]
        let cases: [([String], [String])] = [
            (["--checkpoint-dir", scratch.child("nothing").path, "--resume"], ["nothing to resume", scratch.child("nothing").path]),
            (["--checkpoint-dir", scratch.child("c").path, "--log-jsonl", "/nonexistent/dir/log.jsonl"], ["/nonexistent/dir/log.jsonl"]),
            (["--checkpoint-dir", file], [file, "not a directory"]),
        ]
        for (flags, mentions) in cases {
            let result = try run(base + flags)
            assertOneLineError(result, mentions: mentions)
            XCTAssertFalse(result.standardOutput.contains("step 1/"), "failed only after training: \(result.all)")
        }
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "not a directory\n")
    }

    // MARK: Helpers

    /// The decimal number just before `suffix` (first occurrence).
    static func number(before suffix: String, in text: String) -> Double? {
        guard let range = text.range(of: suffix) else { return nil }
        let head = text[..<range.lowerBound]
        let token = head.split(whereSeparator: { $0 == " " || $0 == "(" || $0 == "\n" }).last.map(String.init) ?? ""
        return Double(token)
    }

    static func snapshot(_ path: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: path).appendingPathComponent(name))
        }
        return files
    }
}
