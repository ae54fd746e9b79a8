import Foundation
import TestSupport
import XCTest

/// `--task classify` as a user runs it: train on a labelled file (in-process, with local
/// workers, resumed; all byte-identical), the metrics in the log and the JSONL, `predict`,
/// `eval` of a labelled file, bad lines named, and scripts/make-speaker-data.
final class ClassifyCLITests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-classify" }

    static let model = ["--task", "classify", "--cell", "gru", "--hidden", "12", "--layers", "2", "--bidirectional",
                        "--batch", "16", "--chunk", "4", "--sample-length", "0"]

    func run(_ arguments: [String]) throws -> BinaryRunner.Result {
        try recur.run(arguments, in: scratch.url)
    }

    /// A labelled file of `count` lines by the built-in rule's idea: the label is the first letter.
    func labelled(_ name: String, count: Int, seed: Int = 1) throws -> String {
        var lines: [String] = []
        var x = UInt64(seed)
        for _ in 0..<count {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            let label = ["north", "south", "east"][Int(x >> 60) % 3]
            let text = String(label.first!) + String(repeating: "xyz ", count: 1 + Int(x >> 40) % 6)
            lines.append("\(label)\t\(text)")
        }
        let path = scratch.child(name)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: path)
        return path.path
    }

    func bytes(_ checkpoint: String) throws -> Data {
        try Data(contentsOf: scratch.child(checkpoint).appendingPathComponent("model.safetensors"))
    }

    func testTrainWorkersAndResumeGiveTheSameClassifier() throws {
        let data = try labelled("train.tsv", count: 300)
        let base = ["train", "--data", data] + Self.model + ["--steps", "12", "--eval-every", "6"]
        let one = try run(base + ["--workers", "1", "--threads", "2", "--checkpoint", scratch.child("one").path,
                                  "--log-jsonl", scratch.child("one.jsonl").path])
        XCTAssertEqual(one.status, 0, one.all)
        XCTAssertTrue(one.standardOutput.contains("examples \(data): 3 labels"), one.all)
        XCTAssertTrue(one.standardOutput.contains("nats/example, accuracy"), one.all)
        XCTAssertTrue(one.standardOutput.contains("majority baseline"), one.all)
        XCTAssertTrue(one.standardOutput.contains("ex/s"), one.all)
        let two = try run(base + ["--workers", "2", "--threads", "1", "--checkpoint", scratch.child("two").path])
        XCTAssertEqual(two.status, 0, two.all)
        XCTAssertEqual(try bytes("one"), try bytes("two"), "--workers 2 trained another classifier")
        let sharded = try run(base + ["--workers", "2", "--threads", "1", "--shards", "2", "--checkpoint", scratch.child("sharded").path])
        XCTAssertEqual(sharded.status, 0, sharded.all)
        XCTAssertEqual(try bytes("one"), try bytes("sharded"), "--shards 2 trained another classifier")

        let half = try run(["train", "--data", data] + Self.model + ["--steps", "5", "--workers", "1", "--threads", "1",
                                                                    "--checkpoint", scratch.child("resumed").path])
        XCTAssertEqual(half.status, 0, half.all)
        let rest = try run(["train", "--resume", "--checkpoint", scratch.child("resumed").path, "--steps", "12",
                            "--workers", "1", "--sample-length", "0", "--eval-every", "6"])
        XCTAssertEqual(rest.status, 0, rest.all)
        XCTAssertEqual(try bytes("one"), try bytes("resumed"), "5 + resume + 7 steps differ from 12")

        // The JSONL carries the metrics of each evaluation.
        let records = try String(contentsOf: scratch.child("one.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let evaluations = records.filter { $0["kind"] as? String == "evaluation" }
        XCTAssertEqual(evaluations.map { $0["step"] as? Int }, [6, 12])
        let metrics = try XCTUnwrap(evaluations.last?["classification"] as? [String: Any])
        XCTAssertEqual(metrics["labels"] as? [String], ["east", "north", "south"])
        XCTAssertEqual((metrics["confusion"] as? [[Int]])?.count, 3)
        XCTAssertNotNil(metrics["accuracy"] as? Double)
        XCTAssertEqual((metrics["f1"] as? [Double])?.count, 3)
    }

    /// Without --data, local workers load the built-in labelled data too (`work --task classify`).
    func testBuiltinDataWithLocalWorkers() throws {
        let base = ["train", "--task", "classify", "--hidden", "8", "--layers", "1", "--batch", "8", "--steps", "6", "--sample-length", "0"]
        let one = try run(base + ["--workers", "1", "--checkpoint", scratch.child("one").path])
        XCTAssertEqual(one.status, 0, one.all)
        XCTAssertTrue(one.standardOutput.contains("examples builtin: 4 labels"), one.all)
        let two = try run(base + ["--workers", "2", "--threads", "1", "--checkpoint", scratch.child("two").path])
        XCTAssertEqual(two.status, 0, two.all)
        XCTAssertEqual(try bytes("one"), try bytes("two"))
    }

    func testPredictAndEvalUseTheCheckpointsLabels() throws {
        let data = try labelled("train.tsv", count: 400)
        let trained = try run(["train", "--data", data] + Self.model + ["--steps", "150", "--workers", "1", "--threads", "2",
                                                                       "--checkpoint", scratch.child("model").path])
        XCTAssertEqual(trained.status, 0, trained.all)
        let inputs = scratch.child("inputs.txt")
        try Data("nxyz xyz\nsxyz\n\nexyz xyz xyz\n".utf8).write(to: inputs)
        let predicted = try run(["predict", "--checkpoint", scratch.child("model").path, "--data", inputs.path])
        XCTAssertEqual(predicted.status, 0, predicted.all)
        let lines = predicted.standardOutput.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 4, predicted.all)
        XCTAssertEqual(lines.map { $0.split(separator: "\t").first.map(String.init) }, ["north", "south", "-", "east"],
                       "150 steps learn the first letter; an empty line has no label")
        let p = try XCTUnwrap(Double(lines[0].split(separator: "\t")[1]))
        XCTAssertTrue(p > 0.5 && p <= 1, predicted.all)

        let held = try labelled("held.tsv", count: 60, seed: 9)
        let evaluated = try run(["eval", "--checkpoint", scratch.child("model").path, "--data", held])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        XCTAssertTrue(evaluated.standardOutput.contains("over 60 examples"), evaluated.all)
        XCTAssertTrue(evaluated.standardOutput.contains("precision"), evaluated.all)
        let accuracy = try XCTUnwrap(evaluated.standardOutput.split(separator: " ").firstIndex(of: "accuracy").map {
            Double(evaluated.standardOutput.split(separator: " ")[$0 + 1].dropLast(2))
        } ?? nil)
        XCTAssertGreaterThan(accuracy, 80, evaluated.all)

        // A language model's tools refuse a classifier, and the other way round.
        let sampled = try run(["sample", "--checkpoint", scratch.child("model").path])
        assertOneLineError(sampled, mentions: ["classifier", "recur predict"], status: 64)
    }

    /// A mean-pooled bidirectional classifier started from a language model's layers: the same
    /// bytes with one worker and two threads, two workers, and 5 + resume + 7 steps; `predict`
    /// reads the pooling back from the checkpoint; a language model refuses --pool.
    func testMeanPooledClassifierFromALanguageModel() throws {
        let data = try labelled("train.tsv", count: 300)
        let text = try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t")[1] }
        try Data((text.joined(separator: "\n") + "\n").utf8).write(to: scratch.child("lm.txt"))
        let lm = try run(["train", "--data", scratch.child("lm.txt").path, "--cell", "lstm", "--hidden", "10", "--layers", "1",
                          "--batch", "4", "--seq", "8", "--steps", "4", "--workers", "1", "--sample-length", "0",
                          "--checkpoint", scratch.child("lm").path])
        XCTAssertEqual(lm.status, 0, lm.all)
        let base = ["train", "--task", "classify", "--data", data, "--init-from", scratch.child("lm").path, "--bidirectional",
                    "--pool", "mean", "--batch", "16", "--chunk", "4", "--sample-length", "0", "--eval-every", "6"]
        let one = try run(base + ["--steps", "12", "--workers", "1", "--threads", "2", "--checkpoint", scratch.child("one").path])
        XCTAssertEqual(one.status, 0, one.all)
        XCTAssertTrue(one.standardOutput.contains("started the recurrent layers from the language model"), one.all)
        XCTAssertTrue(one.standardOutput.contains("character(s) it never saw"), "the labels' letters and the tab: \(one.all)")
        let two = try run(base + ["--steps", "12", "--workers", "2", "--threads", "1", "--checkpoint", scratch.child("two").path])
        XCTAssertEqual(two.status, 0, two.all)
        XCTAssertEqual(try bytes("one"), try bytes("two"), "--workers 2 trained another classifier")
        let half = try run(base + ["--steps", "5", "--workers", "1", "--checkpoint", scratch.child("resumed").path])
        XCTAssertEqual(half.status, 0, half.all)
        let rest = try run(["train", "--resume", "--checkpoint", scratch.child("resumed").path, "--steps", "12",
                            "--workers", "1", "--sample-length", "0"])
        XCTAssertEqual(rest.status, 0, rest.all)
        XCTAssertEqual(try bytes("one"), try bytes("resumed"), "5 + resume + 7 steps differ from 12")
        let modelFile = String(decoding: try bytes("one").prefix(4096), as: UTF8.self)
        XCTAssertTrue(modelFile.contains(#"\"pooling\":\"mean\""#), "the pooling is in the model's metadata")

        try Data("nxyz xyz\n".utf8).write(to: scratch.child("inputs.txt"))
        let predicted = try run(["predict", "--checkpoint", scratch.child("one").path, "--data", scratch.child("inputs.txt").path])
        XCTAssertEqual(predicted.status, 0, predicted.all)
        XCTAssertEqual(predicted.standardOutput.split(separator: "\n").count, 1, predicted.all)

        let wider = try run(base + ["--hidden", "12", "--steps", "1", "--workers", "1", "--checkpoint", ""])
        assertOneLineError(wider, mentions: ["--hidden"])
        let languageModel = try run(["train", "--pool", "mean", "--steps", "1", "--workers", "1", "--checkpoint", ""])
        assertOneLineError(languageModel, mentions: ["--pool", "--task"])
    }

    func testBadLabelledLinesAreNamed() throws {
        let path = scratch.child("bad.tsv")
        try Data("a\tfine\nno tab on this line\n".utf8).write(to: path)
        let result = try run(["train", "--data", path.path] + Self.model + ["--steps", "1", "--workers", "1", "--checkpoint", ""])
        assertOneLineError(result, mentions: ["bad.tsv:2", "no tab"], status: 65)
        let lm = try run(["train", "--bidirectional", "--steps", "1", "--workers", "1", "--checkpoint", ""])
        assertOneLineError(lm, mentions: ["--bidirectional", "--task"])
    }

    /// The README's speaker recipe on a small play in tinyshakespeare's layout.
    func testSpeakerRecipeMakesTrainingAndValidationFiles() throws {
        var play = ""
        for i in 0..<40 { play += ["ROMEO", "JULIET", "NURSE"][i % 3] + ":\nLine \(i) of speech.\nAnd more.\n\n" }
        try Data(play.utf8).write(to: scratch.child("play.txt"))
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/make-speaker-data")
        let made = try ProcessRunner.run(script, [scratch.child("play.txt").path, scratch.child("speakers").path, "--top", "2"],
                                         in: scratch.url, timeout: 60)
        XCTAssertEqual(made.status, 0, made.all)
        let train = try String(contentsOf: scratch.child("speakers.train.tsv"), encoding: .utf8)
        let validation = try String(contentsOf: scratch.child("speakers.val.tsv"), encoding: .utf8)
        XCTAssertTrue(train.hasPrefix("ROMEO\tLine 0 of speech.\nROMEO\tAnd more.\n"), train)
        XCTAssertFalse(train.contains("NURSE") || validation.contains("NURSE"), "only the top 2 speakers")
        XCTAssertEqual(validation.split(separator: "\n").count, 3 * 2, "speeches 9, 19 and 39 (ROMEO, JULIET, ROMEO; 29 is NURSE's): every 10th")
        let result = try run(["train", "--data", scratch.child("speakers.train.tsv").path, "--val-data", scratch.child("speakers.val.tsv").path,
                              "--task", "classify", "--hidden", "8", "--layers", "1", "--batch", "8", "--steps", "3",
                              "--workers", "1", "--checkpoint", ""])
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("validation 6"), result.all)
    }
}
