import Foundation
import TestSupport
import Training
import XCTest

/// The bytes of `model.safetensors` after fixed short runs, against the SHA-256s committed in
/// Tests/Golden/hashes.txt: the same at every kernel level (`RECUR_KERNEL_LEVEL`) and on every
/// x86-64 CPU, since every Float product and activation is Recur's own kernel with one order of
/// operations (docs/DESIGN.md, "Determinism"). A level the CPU lacks is skipped.
///
/// When a change is meant to change the numbers, regenerate the file with
/// `RECUR_UPDATE_GOLDEN=1 swift test -c release --disable-swift-testing --filter GoldenHashTests.testPortable`
/// and say so in the commit.
final class GoldenHashTests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-golden" }

    /// A language model small enough for the portable kernels (a few seconds for all runs) and
    /// with H = 48 so that tiles are cut by the edges of C (48 = 32 + 16 columns, 4H = 192 rows).
    private static let languageModel = ["--layers", "2", "--hidden", "48", "--batch", "8", "--seq", "16", "--chunk", "2",
                                        "--steps", "6", "--seed", "7", "--sample-length", "0"]

    /// name → arguments of `recur train` (built-in corpus). W = 2 and the sharded run must give
    /// lstm-w1's bytes; the file records each on its own line all the same.
    static let runs: [(name: String, arguments: [String])] = [
        ("rnn-w1", ["--cell", "rnn", "--workers", "1", "--threads", "2"] + languageModel),
        ("lstm-w1", ["--cell", "lstm", "--workers", "1", "--threads", "2"] + languageModel),
        ("gru-w1", ["--cell", "gru", "--workers", "1", "--threads", "2"] + languageModel),
        ("lstm-w2", ["--cell", "lstm", "--workers", "2", "--threads", "1"] + languageModel),
        ("lstm-w2-shards2", ["--cell", "lstm", "--workers", "2", "--threads", "1", "--shards", "2"] + languageModel),
        ("lstm-dropout", ["--cell", "lstm", "--workers", "1", "--threads", "2", "--dropout", "0.2"] + languageModel),
        ("gru-classify", ["--task", "classify", "--cell", "gru", "--layers", "2", "--hidden", "24", "--bidirectional",
                          "--pool", "mean", "--batch", "8", "--steps", "6", "--seed", "7", "--workers", "1", "--threads", "2"]),
    ]

    static var hashFile: URL {
        ProcessRunner.packageRoot()!.appendingPathComponent("Tests/Golden/hashes.txt")
    }

    /// name → SHA-256 (hex) from the committed file; `#` lines are comments.
    static func committedHashes() throws -> [String: String] {
        var hashes: [String: String] = [:]
        for line in try String(contentsOf: hashFile, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2 else { continue }
            hashes[String(fields[0])] = String(fields[1])
        }
        return hashes
    }

    /// RECUR_KERNEL_LEVEL that is not a level: one line naming it, exit 64, before anything runs.
    func testAnUnknownKernelLevelIsOneLineAndExit64() throws {
        let result = try recur.run(["train", "--steps", "1"], in: scratch.url, environment: ["RECUR_KERNEL_LEVEL": "sse4"])
        assertOneLineError(result, mentions: ["RECUR_KERNEL_LEVEL", "sse4", "portable, avx2, avx512"], status: 64)
    }

    func testPortable() throws { try check(level: "portable") }
    func testAVX2() throws { try check(level: "avx2") }
    func testAVX512() throws { try check(level: "avx512") }

    private func check(level: String) throws {
        let updating = ProcessInfo.processInfo.environment["RECUR_UPDATE_GOLDEN"] != nil
        let expected = updating ? [:] : try Self.committedHashes()
        var got: [(String, String)] = []
        for (name, arguments) in Self.runs {
            let directory = scratch.child("\(name)-\(level)")
            let result = try recur.run(["train"] + arguments + ["--checkpoint-dir", directory.path], in: scratch.url,
                                       timeout: 120, environment: ["RECUR_KERNEL_LEVEL": level])
            if result.status == 64 && result.standardError.contains("lacks") {
                throw XCTSkip("this CPU lacks \(level): \(result.standardError)")
            }
            XCTAssertEqual(result.status, 0, "\(name) at \(level): \(result.all)")
            XCTAssertTrue(result.standardOutput.contains("kernels \(level)") || name.contains("w2"),
                          "\(name): the start line names the level; \(result.all)")
            let bytes = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
            got.append((name, SHA256.hex(bytes)))
        }
        if updating {
            try write(got, level: level)
            throw XCTSkip("wrote \(Self.hashFile.path) from the \(level) runs")
        }
        for (name, hash) in got {
            XCTAssertEqual(hash, expected[name], "golden run \(name) at kernel level \(level): sha256 of model.safetensors is \(hash), Tests/Golden/hashes.txt has \(expected[name] ?? "no line")")
        }
        let lstm = got.first { $0.0 == "lstm-w1" }?.1
        for name in ["lstm-w2", "lstm-w2-shards2"] {
            XCTAssertEqual(got.first { $0.0 == name }?.1, lstm, "\(name) at \(level) differs from lstm-w1")
        }
    }

    /// "model name, family F model M" from /proc/cpuinfo, for the file's header.
    static func cpuName() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "an unknown CPU" }
        func field(_ key: String) -> String {
            info.split(separator: "\n").first { $0.hasPrefix(key) }.map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "?"
        }
        return "\(field("model name")), family \(field("cpu family")) model \(field("model\t"))"
    }

    private func write(_ hashes: [(String, String)], level: String) throws {
        let header = """
        # SHA-256 of model.safetensors after each run of Tests/RecurCLITests/GoldenHashTests.swift (name, hash).
        # The same at every kernel level and on every x86-64 CPU; a mismatch is a change of the numbers.
        # Written at kernel level \(level) on \(Self.cpuName()); see the test for how to regenerate.

        """
        let body = hashes.map { "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n"
        try FileManager.default.createDirectory(at: Self.hashFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try (header + body).write(to: Self.hashFile, atomically: true, encoding: .utf8)
    }
}
