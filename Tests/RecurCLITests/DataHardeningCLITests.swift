import Foundation
import TestSupport
import XCTest

/// Issue 21's data-side items as a user meets them: a corpus with a byte order mark (item 6),
/// CR LF label files (item 7), `predict`'s input (item 11) and label names that would break
/// its output (item 12). The library side is `DataHardeningTests`.
final class DataHardeningCLITests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-data-hardening" }

    static let bom = Data([0xEF, 0xBB, 0xBF])
    static let languageModel = ["--cell", "gru", "--hidden", "8", "--layers", "1", "--batch", "4", "--seq", "8",
                                "--workers", "1", "--threads", "1", "--sample-length", "0"]
    static let classifier = ["--task", "classify", "--cell", "gru", "--hidden", "8", "--layers", "1", "--batch", "8",
                             "--workers", "1", "--threads", "1", "--sample-length", "0"]

    func run(_ arguments: [String]) throws -> BinaryRunner.Result { try recur.run(arguments, in: scratch.url) }

    func write(_ data: Data, to name: String) throws -> String {
        try data.write(to: scratch.child(name))
        return scratch.child(name).path
    }

    /// `count` lines `label<TAB>text` (labels north, south, east by a fixed rule), ended by `end`.
    static func labelled(count: Int, end: String, seed: UInt64 = 1) -> String {
        var x = seed, lines: [String] = []
        for _ in 0..<count {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            let label = ["north", "south", "east"][Int(x >> 60) % 3]
            lines.append("\(label)\t\(label.first!)" + String(repeating: " xyz", count: 1 + Int(x >> 40) % 5))
        }
        return lines.joined(separator: end) + end
    }

    func modelBytes(_ checkpoint: String) throws -> Data {
        try Data(contentsOf: scratch.child(checkpoint).appendingPathComponent("model.safetensors"))
    }

    // MARK: Item 6

    /// A corpus that starts with a BOM trains and checkpoints (every checkpoint used to fail its
    /// read-back, exit 65), resumes to the same bytes, samples and evaluates; a classifier's
    /// first label is "north", not "\u{FEFF}north".
    func testItem6ByteOrderMarkCorpusTrainsCheckpointsResumesSamplesAndEvaluates() throws {
        let text = (0..<300).map { "line \($0 % 17) of a small text\n" }.joined()
        let corpus = try write(Self.bom + Data(text.utf8), to: "bom.txt")
        let full = try run(["train", "--data", corpus] + Self.languageModel + ["--steps", "8", "--checkpoint", scratch.child("full").path])
        XCTAssertEqual(full.status, 0, full.all)
        let half = try run(["train", "--data", corpus] + Self.languageModel + ["--steps", "4", "--checkpoint", scratch.child("half").path])
        XCTAssertEqual(half.status, 0, half.all)
        let resumed = try run(["train", "--resume", "--checkpoint", scratch.child("half").path, "--steps", "8",
                               "--workers", "1", "--threads", "1", "--sample-length", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertEqual(try modelBytes("full"), try modelBytes("half"), "4 + resume + 4 steps differ from 8")
        let sampled = try run(["sample", "--checkpoint", scratch.child("full").path, "--length", "30"])
        XCTAssertEqual(sampled.status, 0, sampled.all)
        XCTAssertFalse(sampled.standardOutput.contains("\u{FEFF}"), "a leading BOM is not a symbol: \(sampled.all)")
        let evaluated = try run(["eval", "--checkpoint", scratch.child("full").path, "--data", corpus])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        XCTAssertTrue(evaluated.standardOutput.contains("validation loss"), evaluated.all)

        let labelled = try write(Self.bom + Data(Self.labelled(count: 120, end: "\n").utf8), to: "bom.tsv")
        let classifier = try run(["train", "--data", labelled] + Self.classifier + ["--steps", "6", "--checkpoint", scratch.child("cls").path])
        XCTAssertEqual(classifier.status, 0, classifier.all)
        XCTAssertTrue(classifier.standardOutput.contains("3 labels"), classifier.all)
        let inputs = try write(Data("nxyz\nsxyz\n".utf8), to: "inputs.txt")
        let predicted = try run(["predict", "--checkpoint", scratch.child("cls").path, "--data", inputs, "--top", "3"])
        XCTAssertEqual(predicted.status, 0, predicted.all)
        XCTAssertEqual(Set((predicted.standardOutput.split(separator: "\n").first ?? "").split(separator: "\t").enumerated()
                           .filter { $0.offset % 2 == 0 }.map { String($0.element) }), ["east", "north", "south"], predicted.all)
        let classified = try run(["eval", "--checkpoint", scratch.child("cls").path, "--data", labelled])
        XCTAssertEqual(classified.status, 0, classified.all)
        XCTAssertTrue(classified.standardOutput.contains("over 120 examples"), classified.all)
    }

    // MARK: Item 7

    /// A CR LF label file is as many lines for `--val-data`, `eval` and `predict` as for
    /// training (each used to see one line and exit 0); a lone CR is one error naming FILE:LINE.
    func testItem7CRLFLabelFilesAreTheSameLinesForValDataEvalAndPredict() throws {
        let train = try write(Data(Self.labelled(count: 90, end: "\r\n").utf8), to: "train.tsv")
        let validation = try write(Data(Self.labelled(count: 30, end: "\r\n", seed: 5).utf8), to: "val.tsv")
        let trained = try run(["train", "--data", train, "--val-data", validation] + Self.classifier
                              + ["--steps", "6", "--checkpoint", scratch.child("model").path])
        XCTAssertEqual(trained.status, 0, trained.all)
        XCTAssertTrue(trained.standardOutput.contains("train 90, validation 30"), trained.all)
        XCTAssertTrue(trained.standardOutput.contains("over 30 examples"), trained.all)
        let evaluated = try run(["eval", "--checkpoint", scratch.child("model").path, "--data", validation])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        XCTAssertTrue(evaluated.standardOutput.contains("over 30 examples"), evaluated.all)
        let inputs = try write(Data(((0..<25).map { "\($0 % 2 == 0 ? "n" : "s") xyz" }.joined(separator: "\r\n") + "\r\n").utf8),
                               to: "inputs.txt")
        let predicted = try run(["predict", "--checkpoint", scratch.child("model").path, "--data", inputs])
        XCTAssertEqual(predicted.status, 0, predicted.all)
        XCTAssertEqual(predicted.standardOutput.split(separator: "\n").count, 25, predicted.all)

        let lone = try write(Data("north\tn xyz\r\nsouth\ts xyz\reast\te xyz\r\n".utf8), to: "lone.tsv")
        assertOneLineError(try run(["eval", "--checkpoint", scratch.child("model").path, "--data", lone]),
                           mentions: ["\(lone):2:", "carriage return"], status: 65)
        assertOneLineError(try run(["predict", "--checkpoint", scratch.child("model").path, "--data", lone]),
                           mentions: ["\(lone):2:", "carriage return"], status: 65)
        assertOneLineError(try run(["train", "--data", lone] + Self.classifier + ["--steps", "1", "--checkpoint", scratch.child("x").path]),
                           mentions: ["\(lone):2:", "carriage return"], status: 65)
    }

    // MARK: Item 11

    /// `predict` streams: 800 MB of input on standard input under a 700 MB address-space
    /// limit gives one line per input (it used to read everything first and die, rc 134).
    func testItem11PredictStreamsStandardInputLargerThanItsMemoryLimit() throws {
        let train = try write(Data(Self.labelled(count: 60, end: "\n").utf8), to: "train.tsv")
        let trained = try run(["train", "--data", train] + Self.classifier + ["--steps", "2", "--checkpoint", scratch.child("model").path])
        XCTAssertEqual(trained.status, 0, trained.all)
        let line = try write(Data((String(repeating: "n xyz ", count: 666_666) + "\n").utf8), to: "line.txt")   // 4 MB
        let script = """
            ulimit -v 700000
            i=0; while [ $i -lt 200 ]; do cat '\(line)'; i=$((i+1)); done \
              | '\(recur.executable.path)' predict --checkpoint '\(scratch.child("model").path)' | wc -l
            """
        let result = try ProcessRunner.run(URL(fileURLWithPath: "/bin/sh"), ["-c", script], in: scratch.url, timeout: 300)
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertEqual(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "200", result.all)
        XCTAssertEqual(result.standardError, "", result.all)
    }

    /// Unusable `--data` of predict and eval: one `recur:` line naming the flag and the path,
    /// exit 65, no Foundation error text; a device is refused before reading; a FIFO is read.
    func testItem11UnusablePredictAndEvalInputsAreOneLineNamingFlagAndPath() throws {
        let train = try write(Data(Self.labelled(count: 60, end: "\n").utf8), to: "train.tsv")
        let trained = try run(["train", "--data", train] + Self.classifier + ["--steps", "2", "--checkpoint", scratch.child("model").path])
        XCTAssertEqual(trained.status, 0, trained.all)
        let model = scratch.child("model").path, missing = scratch.child("missing.txt").path
        for command in ["predict", "eval"] {
            for (path, words) in [("/dev/zero", ["character device"]), (missing, ["No such file"]), (scratch.path, ["directory"])] {
                let result = try run([command, "--checkpoint", model, "--data", path])
                assertOneLineError(result, mentions: ["--data \(path)"] + words, status: 65)
                XCTAssertFalse(result.standardError.contains("NSCocoaErrorDomain"), result.all)
            }
        }
        let bad = try write(Data("ok\n".utf8) + Data([0x6E, 0xFF, 0x0A]), to: "bad.txt")
        assertOneLineError(try run(["predict", "--checkpoint", model, "--data", bad]),
                           mentions: ["\(bad):2:", "not valid UTF-8", "0xFF"], status: 65)
        let fifo = scratch.child("fifo").path
        let script = "mkfifo '\(fifo)' && (printf 'n xyz\\r\\ns xyz\\n' > '\(fifo)' &) && exec '\(recur.executable.path)' predict --checkpoint '\(model)' --data '\(fifo)'"
        let piped = try ProcessRunner.run(URL(fileURLWithPath: "/bin/sh"), ["-c", script], in: scratch.url, timeout: 30)
        XCTAssertEqual(piped.status, 0, piped.all)
        XCTAssertEqual(piped.standardOutput.split(separator: "\n").count, 2, piped.all)
    }

    // MARK: Item 12

    /// Labels with control characters: a training file's is refused naming FILE:LINE, and a
    /// checkpoint header's (hand-edited: "north" → "n<TAB>h") is refused by predict instead
    /// of printing a line with an extra column.
    func testItem12LabelsWithControlCharactersAreRefused() throws {
        let escape = try write(Data("north\tn xyz\nso\u{1B}[2Juth\ts xyz\n".utf8), to: "escape.tsv")
        assertOneLineError(try run(["train", "--data", escape] + Self.classifier + ["--steps", "1", "--checkpoint", scratch.child("x").path]),
                           mentions: ["\(escape):2:", "U+001B"], status: 65)

        let train = try write(Data(Self.labelled(count: 60, end: "\n").utf8), to: "train.tsv")
        let trained = try run(["train", "--data", train] + Self.classifier + ["--steps", "2", "--checkpoint", scratch.child("model").path])
        XCTAssertEqual(trained.status, 0, trained.all)
        let file = scratch.child("model").appendingPathComponent("model.safetensors")
        var bytes = [UInt8](try Data(contentsOf: file))
        let from = Array("north".utf8), to = Array("n\\\\th".utf8)   // same length: the header's size is unchanged
        XCTAssertEqual(from.count, to.count)
        let at = try XCTUnwrap((0...(bytes.count - from.count)).first { Array(bytes[$0..<$0 + from.count]) == from })
        bytes.replaceSubrange(at..<at + from.count, with: to)
        try Data(bytes).write(to: file)
        let inputs = try write(Data("n xyz\n".utf8), to: "inputs.txt")
        assertOneLineError(try run(["predict", "--checkpoint", scratch.child("model").path, "--data", inputs, "--top", "3"]),
                           mentions: ["labels entry", "control character"], status: 65)
    }
}
