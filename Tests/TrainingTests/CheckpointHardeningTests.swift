import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// Damaged and forged checkpoints: each is refused with one `TrainingError.checkpoint` line
/// before anything sized by it is allocated, and a checkpoint that is not finite is never
/// written over a good one.
final class CheckpointHardeningTests: XCTestCase {
    typealias F = TrainingFixtures

    var directory: TemporaryDirectory!
    var url: URL!

    override func setUpWithError() throws {
        directory = TemporaryDirectory("recur-ckpt-hardening")
        url = directory.child("ckpt")
        try CheckpointTests.fullCheckpoint(cell: .lstm).write(to: url)
    }

    override func tearDown() { directory = nil }

    /// Asserts that reading fails with a one-line `TrainingError.checkpoint` containing `words`.
    func assertRefused(_ words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Checkpoint.read(from: url), file: file, line: line) { error in
            guard case TrainingError.checkpoint(let message)? = error as? TrainingError else {
                return XCTFail("expected TrainingError.checkpoint, got \(error)", file: file, line: line)
            }
            for word in words { XCTAssertTrue(message.contains(word), "\(word) not in: \(message)", file: file, line: line) }
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
        }
    }

    /// Rewrites one safetensors file of the checkpoint through `change`.
    func rewrite(_ name: String, _ change: (inout [String: SafetensorsTensor], inout [String: String]) -> Void) throws {
        let path = url.appendingPathComponent(name)
        var (tensors, metadata) = try Safetensors.decode(Array(try Data(contentsOf: path)))
        change(&tensors, &metadata)
        try Data(Safetensors.encode(tensors: tensors.keys.sorted().map { tensors[$0]! }, metadata: metadata)).write(to: path)
    }

    func rewriteState(_ change: (inout [String: Any]) -> Void) throws {
        let path = url.appendingPathComponent("state.json")
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: path)) as? [String: Any])
        change(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: path)
    }

    // MARK: Files that are not files

    func testModelFileReplacedByAFIFOIsRefusedWithoutBlocking() throws {
        let model = url.appendingPathComponent("model.safetensors").path
        try FileManager.default.removeItem(atPath: model)
        XCTAssertEqual(mkfifo(model, 0o644), 0)
        assertRefused([model, "FIFO", "not a regular file"])
    }

    func testOversizedFileIsRefusedBeforeReading() throws {
        XCTAssertThrowsError(try AtomicDirectory.read("model.safetensors", in: url, maximumBytes: 100)) { error in
            guard case .fileTooLarge(let path, let count, let limit)? = error as? AtomicDirectoryError else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue(path.hasSuffix("model.safetensors"))
            XCTAssertGreaterThan(count, 100)
            XCTAssertEqual(limit, 100)
        }
        XCTAssertEqual(Checkpoint.maximumTensorFileBytes, 16 << 30)
    }

    // MARK: Forged metadata

    func testHugeHiddenSizeInMetadataIsRefused() throws {
        try rewrite("model.safetensors") { _, metadata in
            metadata["config"] = "{\"cell\":\"lstm\",\"hidden_size\":1099511627776,\"num_layers\":2,\"vocab_size\":\(CheckpointTests.vocabulary.count)}"
        }
        assertRefused(["model.safetensors", "1099511627776"])
    }

    func testHugeLayerCountInMetadataIsRefused() throws {
        try rewrite("model.safetensors") { _, metadata in
            metadata["config"] = "{\"cell\":\"lstm\",\"hidden_size\":3,\"num_layers\":1099511627776,\"vocab_size\":\(CheckpointTests.vocabulary.count)}"
        }
        assertRefused(["model.safetensors", "1099511627776"])
    }

    func testFewerLayersInMetadataThanTensorsIsRefused() throws {
        try rewrite("model.safetensors") { _, metadata in
            metadata["config"] = "{\"cell\":\"lstm\",\"hidden_size\":3,\"num_layers\":1,\"vocab_size\":\(CheckpointTests.vocabulary.count)}"
        }
        assertRefused(["model.safetensors", "rnn.weight_hh_l1"])
    }

    func testNegativeStepIsRefused() throws {
        try rewriteState { $0["step"] = -5 }
        assertRefused(["state.json", "step -5"])
    }

    func testStepBeyondTheRunIsRefused() throws {
        try rewriteState { $0["step"] = 1 << 62 }
        assertRefused(["state.json", "step \(1 << 62)"])
    }

    func testGarbageOptimizerStepCountIsRefused() throws {
        for garbage in ["abc", "-1", "43", ""] {
            try rewrite("optimizer.safetensors") { _, metadata in metadata["step_count"] = garbage }
            assertRefused(["optimizer.safetensors", "step_count"])
        }
    }

    func testStateOfAnotherModelIsRefused() throws {
        try rewriteState { object in
            var config = object["training_config"] as! [String: Any]
            config["hidden"] = 5
            object["training_config"] = config
        }
        assertRefused(["state.json", "hidden 5"])
    }

    // MARK: Non-finite values

    func testNaNWeightIsRefusedNamingTheTensor() throws {
        try rewrite("model.safetensors") { tensors, _ in
            var t = tensors["rnn.weight_hh_l1"]!
            t.values[2] = .nan
            tensors["rnn.weight_hh_l1"] = t
        }
        assertRefused(["rnn.weight_hh_l1", "nan", "model.safetensors"])
    }

    func testInfiniteCarriedStateIsRefused() throws {
        try rewrite("hidden.safetensors") { tensors, _ in
            var t = tensors["c"]!
            t.values[0] = -.infinity
            tensors["c"] = t
        }
        assertRefused(["hidden.safetensors", "tensor c", "-inf"])
    }

    func testWriteRefusesNonFiniteValuesAndKeepsThePreviousCheckpoint() throws {
        let before = try CheckpointTests.snapshot(url)
        var cases: [(String, (inout Checkpoint) -> Void)] = []
        cases.append(("head.bias", { $0.parameters[$0.parameters.count - 1] = .nan }))
        cases.append(("exp_avg_sq.rnn.weight_ih_l0", { $0.training!.optimizerBuffers[1].values[0] = .infinity }))
        cases.append(("h", { $0.training!.hiddenH[5] = .nan }))
        cases.append(("c", { $0.training!.hiddenC[0] = .nan }))
        for (tensor, damage) in cases {
            var checkpoint = CheckpointTests.fullCheckpoint(cell: .lstm)
            damage(&checkpoint)
            XCTAssertThrowsError(try checkpoint.write(to: url)) { error in
                guard case .nonFinite(let path, let name, _, _)? = error as? CheckpointError else {
                    return XCTFail("expected CheckpointError.nonFinite, got \(error)")
                }
                XCTAssertEqual(path, url.path)
                XCTAssertEqual(name, tensor)
            }
        }
        XCTAssertEqual(try CheckpointTests.snapshot(url), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["ckpt"], "no leftovers")
    }

    func testWriteRefusesInconsistentSizesInsteadOfCrashing() throws {
        var checkpoint = CheckpointTests.fullCheckpoint(cell: .gru)
        checkpoint.training!.hiddenH.removeLast()
        XCTAssertThrowsError(try checkpoint.write(to: url)) { error in
            guard case .inconsistent? = error as? CheckpointError else { return XCTFail("\(error)") }
        }
        checkpoint = CheckpointTests.fullCheckpoint(cell: .gru)
        checkpoint.parameters.append(1)
        XCTAssertThrowsError(try checkpoint.write(to: url)) { error in
            guard case .inconsistent? = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    // MARK: Recovery of an interrupted write

    static let deadPID: pid_t = 999_999_999   // above any pid_max: never a running process

    /// A writer killed between its two renames: NAME is gone, the old copy and the complete new
    /// one sit beside it. Reading restores the new one and removes the old.
    func testDeathBetweenTheRenamesIsRecoveredOnRead() throws {
        let parent = directory.url
        let old = parent.appendingPathComponent(".ckpt.old-\(Self.deadPID)-1a2b")
        try FileManager.default.moveItem(at: url, to: old)
        var newer = CheckpointTests.fullCheckpoint(cell: .lstm)
        newer.training!.step = 43
        newer.training!.optimizerStepCount = 43
        let staging = parent.appendingPathComponent("staging")
        try newer.write(to: staging)
        let temporary = parent.appendingPathComponent(".ckpt.tmp-\(Self.deadPID)-3c4d")
        try FileManager.default.moveItem(at: staging, to: temporary)

        let lines = try Checkpoint.recover(url)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        XCTAssertTrue(lines[0].hasPrefix("restored \(url.path) from \(temporary.path)"), "\(lines)")
        XCTAssertTrue(lines[1].hasPrefix("removed \(old.path)"), "\(lines)")
        XCTAssertEqual(try Checkpoint.read(from: url).training?.step, 43)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent.path), ["ckpt"])
    }

    /// Only the set-aside old copy is left (the new one was never complete): read restores it.
    func testOnlyTheOldCopyLeftIsRestoredByRead() throws {
        let old = directory.url.appendingPathComponent(".ckpt.old-\(Self.deadPID)-ff")
        try FileManager.default.moveItem(at: url, to: old)
        // A temporary cut off after two of its four files: not complete, removed.
        let partial = directory.url.appendingPathComponent(".ckpt.tmp-\(Self.deadPID)-ee")
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: false)
        try FileManager.default.copyItem(at: old.appendingPathComponent("hidden.safetensors"),
                                         to: partial.appendingPathComponent("hidden.safetensors"))
        try FileManager.default.copyItem(at: old.appendingPathComponent("model.safetensors"),
                                         to: partial.appendingPathComponent("model.safetensors"))
        CheckpointTests.assertEqual(try Checkpoint.read(from: url), CheckpointTests.fullCheckpoint(cell: .lstm))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["ckpt"])
    }

    /// A successful write also clears what dead writers left beside the directory.
    func testWriteRemovesDeadWritersLeftovers() throws {
        let stale = directory.url.appendingPathComponent(".ckpt.tmp-\(Self.deadPID)-77")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: false)
        let lines = try CheckpointTests.fullCheckpoint(cell: .rnn).write(to: url)
        XCTAssertEqual(lines.count, 1, "\(lines)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["ckpt"])
    }

    /// Leftovers of a running writer (this process) are never touched.
    func testLeftoversOfALiveWriterAreKept() throws {
        let live = directory.url.appendingPathComponent(".ckpt.tmp-\(getpid())-abc")
        try FileManager.default.createDirectory(at: live, withIntermediateDirectories: false)
        XCTAssertEqual(try Checkpoint.recover(url), [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: live.path))
    }
}
