import Foundation
import TestSupport
import XCTest

/// Bad input found by the hardening review: each must end in one `recur: …` line and a
/// non-zero exit, never a hang, a trap or an allocation crash.
final class HardeningCLITests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-hardening" }

    func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> BinaryRunner.Result {
        try recur.run(arguments, in: scratch.url, timeout: timeout)
    }

    static let small = ["--hidden", "8", "--layers", "1", "--batch", "2", "--seq", "4", "--steps", "2",
                        "--workers", "1", "--sample-length", "0"]

    func corpus() throws -> String {
        let path = scratch.child("corpus.txt")
        try Data(CLITests.corpusText.utf8).write(to: path)
        return path.path
    }

    /// A small trained checkpoint in the scratch directory.
    func checkpoint() throws -> (checkpoint: String, corpus: String) {
        let corpus = try corpus(), checkpoint = scratch.child("ckpt").path
        let result = try run(["train", "--data", corpus, "--checkpoint-dir", checkpoint] + Self.small)
        XCTAssertEqual(result.status, 0, result.all)
        return (checkpoint, corpus)
    }

    // MARK: Files that never end or never open

    func testDeviceOrFIFOAsDataIsRefused() throws {
        let fifo = scratch.child("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        for path in ["/dev/zero", fifo] {
            let result = try run(["train", "--data", path, "--checkpoint-dir", scratch.child("c").path] + Self.small)
            assertOneLineError(result, mentions: [path, "not a regular file", "--data"])
        }
    }

    func testCheckpointFileReplacedByAFIFOIsRefused() throws {
        let (checkpoint, corpus) = try checkpoint()
        let model = checkpoint + "/model.safetensors"
        try FileManager.default.removeItem(atPath: model)
        XCTAssertEqual(mkfifo(model, 0o644), 0)
        assertOneLineError(try run(["sample", "--checkpoint", checkpoint, "--length", "5"]), mentions: [model, "FIFO"])
        assertOneLineError(try run(["eval", "--checkpoint", checkpoint, "--data", corpus]), mentions: [model, "FIFO"])
        assertOneLineError(try run(["train", "--data", corpus, "--checkpoint-dir", checkpoint, "--resume"] + Self.small),
                           mentions: [model, "FIFO"])
    }

    // MARK: Sizes beyond the machine

    func testModelTooLargeForMemoryIsRefusedBeforeAllocating() throws {
        let corpus = try corpus()
        let base = ["--data", corpus, "--checkpoint-dir", scratch.child("c").path, "--workers", "1", "--steps", "1"]
        assertOneLineError(try run(["train", "--hidden", "100000"] + base), mentions: ["--hidden 100000", "physical memory"])
        assertOneLineError(try run(["train", "--layers", "1000000000"] + base), mentions: ["--layers 1000000000", "physical memory"])
        assertOneLineError(try run(["train", "--hidden", "4611686018427387904"] + base), mentions: ["--hidden", "physical memory"])
        assertOneLineError(try run(["bench", "--hidden", "100000"]), mentions: ["--hidden 100000"])
        assertOneLineError(try run(["summary", "--hidden", "4611686018427387904", "--vocab", "10"]), mentions: ["--hidden"])
        assertOneLineError(try run(["serve", "--hidden", "64", "--batch", "100000", "--seq", "100000"]),
                           mentions: ["--batch 100000", "--seq 100000", "physical memory"])
        // Int flags do not take exponents: a parse error, one line as well.
        assertOneLineError(try run(["train", "--layers", "1e9"] + base), mentions: ["1e9", "--layers"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.child("c").path))
    }

    func testSampleLengthBeyondMemoryIsRefused() throws {
        assertOneLineError(try run(["sample", "--checkpoint", "x", "--length", "1000000000000"]),
                           mentions: ["--sample-length 1000000000000", "physical memory"])
        assertOneLineError(try run(["sample", "--checkpoint", "x", "--length", "1e12"]), mentions: ["1e12", "--sample-length"])
        let corpus = try corpus()
        assertOneLineError(try run(["train", "--data", corpus, "--checkpoint-dir", scratch.child("c").path, "--hidden", "8",
                                    "--sample-length", "1000000000000"]), mentions: ["--sample-length 1000000000000"])
    }

    // MARK: Timeouts

    func testServeRefusesNonFiniteTimeouts() throws {
        assertOneLineError(try run(["serve", "--join-timeout", "nan", "--hidden", "8"]), mentions: ["--join-timeout", "nan"])
        assertOneLineError(try run(["serve", "--join-timeout", "inf", "--hidden", "8"]), mentions: ["--join-timeout", "inf"])
        assertOneLineError(try run(["serve", "--heartbeat-timeout", "nan", "--hidden", "8"]), mentions: ["--heartbeat-timeout"])
    }

    func testTrainRefusesNonFiniteHeartbeatTimeout() throws {
        let corpus = try corpus()
        assertOneLineError(try run(["train", "--data", corpus, "--heartbeat-timeout", "nan",
                                    "--checkpoint-dir", scratch.child("c").path] + Self.small), mentions: ["--heartbeat-timeout"])
    }

    func testTrainRefusesWorkspaceBeyondMemory() throws {
        assertOneLineError(try run(["train", "--hidden", "64", "--batch", "100000", "--seq", "100000"]),
                           mentions: ["--batch 100000", "physical memory"])
    }

    // MARK: Damaged checkpoints

    /// Writes NaN over the first value of `tensor` in a safetensors file.
    static func poison(_ file: String, tensor: String) throws {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        let headerLength = Int(bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        let entry = try XCTUnwrap(header[tensor] as? [String: Any])
        let begin = try XCTUnwrap((entry["data_offsets"] as? [Int])?.first)
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { nan in
            bytes.replaceSubrange((8 + headerLength + begin)..<(8 + headerLength + begin + 4), with: nan)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
    }

    func testNaNWeightsAreRefusedByEvalSampleAndResume() throws {
        let (checkpoint, corpus) = try checkpoint()
        try Self.poison(checkpoint + "/model.safetensors", tensor: "rnn.weight_hh_l0")
        for arguments in [["eval", "--checkpoint", checkpoint, "--data", corpus],
                          ["sample", "--checkpoint", checkpoint, "--length", "5"],
                          ["train", "--data", corpus, "--checkpoint-dir", checkpoint, "--resume"] + Self.small] {
            assertOneLineError(try run(arguments), mentions: ["rnn.weight_hh_l0", "nan"])
        }
    }

    /// A writer killed between its two renames: sample and eval restore the complete copy.
    func testInterruptedCheckpointWriteIsRecoveredBySample() throws {
        let (checkpoint, _) = try checkpoint()
        let old = scratch.child(".ckpt.old-999999999-abc").path
        try FileManager.default.moveItem(atPath: checkpoint, toPath: old)
        let result = try run(["sample", "--checkpoint", checkpoint, "--length", "5"])
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardError.contains("restored \(checkpoint) from \(old)"), result.all)
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/model.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: old))
    }

    /// `--resume` recovers a checkpoint left half-replaced by a killed writer.
    func testInterruptedCheckpointWriteIsRecoveredByResume() throws {
        let (checkpoint, corpus) = try checkpoint()
        try FileManager.default.moveItem(atPath: checkpoint, toPath: scratch.child(".ckpt.old-999999999-abc").path)
        var flags = Self.small
        flags[flags.firstIndex(of: "--steps")! + 1] = "3"
        let result = try run(["train", "--data", corpus, "--checkpoint-dir", checkpoint, "--resume"] + flags)
        XCTAssertEqual(result.status, 0, result.all)
        XCTAssertTrue(result.standardOutput.contains("step 3/3"), result.all)
    }

    // MARK: Keys and logs

    func testSecretKeyReadableByOthersIsRefusedWithTheChmod() throws {
        let keys = scratch.child("keys").path
        XCTAssertEqual(try run(["keygen", "--out", keys]).status, 0)
        let secret = keys + "/recur.key"
        XCTAssertEqual(chmod(secret, 0o644), 0)
        let result = try run(["work", "--connect", "tcp://127.0.0.1:9", "--key", secret, "--server-key", keys + "/recur.pub"])
        assertOneLineError(result, mentions: [secret, "chmod 600 \(secret)"])
        XCTAssertEqual(chmod(secret, 0o640), 0)
        assertOneLineError(try run(["serve", "--key", secret, "--authorized-keys", keys + "/recur.pub", "--hidden", "8"]),
                           mentions: ["chmod 600 \(secret)"])
    }

    func testLogOnAFullDiskStopsWithOneLine() throws {
        let corpus = try corpus()
        let result = try run(["train", "--data", corpus, "--log-jsonl", "/dev/full",
                              "--checkpoint-dir", scratch.child("c").path] + Self.small)
        assertOneLineError(result, mentions: ["--log-jsonl /dev/full", "No space left on device"])
    }
}
