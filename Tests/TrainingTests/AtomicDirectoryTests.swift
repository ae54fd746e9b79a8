import Foundation
import XCTest
import Training

final class AtomicDirectoryTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("recur-atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    /// Everything in `root`, hidden entries included (temp and set-aside directories start with ".").
    func entries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
    }

    func testWriteThenRead() throws {
        let target = root.appendingPathComponent("ckpt")
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try AtomicDirectory.write(["model.safetensors": big, "state.json": Array("{}".utf8), "empty": []], to: target)
        XCTAssertEqual(try AtomicDirectory.read("model.safetensors", in: target), big)
        XCTAssertEqual(try AtomicDirectory.read("state.json", in: target), Array("{}".utf8))
        XCTAssertEqual(try AtomicDirectory.read("empty", in: target), [])
        XCTAssertEqual(try entries(), ["ckpt"], "no temp directory left behind")
    }

    func testOverwriteKeepsOnlyNewContent() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1, 2, 3], "old-only": [9]], to: target)
        try AtomicDirectory.write(["a": [4, 5]], to: target)
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [4, 5])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target.path), ["a"])
        XCTAssertEqual(try entries(), ["ckpt"], "the set-aside old directory is removed")
    }

    func testCreatesMissingParents() throws {
        let target = root.appendingPathComponent("runs/one/ckpt")
        try AtomicDirectory.write(["a": [7]], to: target)
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [7])
    }

    /// A file that cannot be created after others were written (name too long for the file
    /// system) fails mid-way: the old checkpoint is intact and the temp directory is gone.
    func testFailureMidwayLeavesOldCheckpointIntact() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1], "b": [2]], to: target)
        let tooLong = "z" + String(repeating: "x", count: 300)
        XCTAssertThrowsError(try AtomicDirectory.write(["a": [10], "b": [20], tooLong: [30]], to: target)) { error in
            guard case let .systemCall(function, path, code)? = error as? AtomicDirectoryError else {
                return XCTFail("expected a system call error, got \(error)")
            }
            XCTAssertEqual(function, "open")
            XCTAssertEqual(code, ENAMETOOLONG)
            XCTAssertTrue(path.hasSuffix(tooLong))
            XCTAssertTrue("\(error)".contains("open failed: File name too long"), "\(error)")
        }
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [1])
        XCTAssertEqual(try AtomicDirectory.read("b", in: target), [2])
        XCTAssertEqual(try entries(), ["ckpt"], "temp directory removed")
    }

    func testInvalidNameIsRefusedBeforeTouchingAnything() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1]], to: target)
        for name in ["sub/file", "", "..", "."] {
            XCTAssertThrowsError(try AtomicDirectory.write(["a": [2], name: [3]], to: target)) { error in
                XCTAssertEqual(error as? AtomicDirectoryError, .invalidFileName(name))
            }
        }
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [1])
        XCTAssertEqual(try entries(), ["ckpt"])
    }

    func testRefusesToReplaceAFile() throws {
        let target = root.appendingPathComponent("notes.txt")
        try Data("keep me".utf8).write(to: target)
        XCTAssertThrowsError(try AtomicDirectory.write(["a": [1]], to: target)) { error in
            XCTAssertEqual(error as? AtomicDirectoryError, .targetNotDirectory(path: target.path))
        }
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "keep me")
        XCTAssertEqual(try entries(), ["notes.txt"])
    }

    func testReadMissingFileNamesThePath() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1]], to: target)
        XCTAssertThrowsError(try AtomicDirectory.read("optimizer.safetensors", in: target)) { error in
            XCTAssertEqual(error as? AtomicDirectoryError,
                           .missingFile(path: target.appendingPathComponent("optimizer.safetensors").path))
            XCTAssertTrue("\(error)".contains("optimizer.safetensors: missing file"))
        }
        XCTAssertThrowsError(try AtomicDirectory.read("a", in: root.appendingPathComponent("nowhere"))) { error in
            guard case .missingFile? = error as? AtomicDirectoryError else { return XCTFail("\(error)") }
        }
    }
}

/// What a killed writer leaves behind, and `AtomicDirectory.recover` putting it right.
final class AtomicDirectoryRecoveryTests: XCTestCase {
    var root: URL!
    static let deadPID: pid_t = 999_999_999   // above any pid_max

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("recur-recover-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: root.path).sorted() }

    /// A directory with a `done` marker counts as complete in these tests.
    func leftover(_ name: String, complete: Bool, content: UInt8) throws {
        var files: [String: [UInt8]] = ["a": [content]]
        if complete { files["done"] = [] }
        let staging = root.appendingPathComponent("staging")
        try AtomicDirectory.write(files, to: staging)
        try FileManager.default.moveItem(at: staging, to: root.appendingPathComponent(name))
    }

    func isComplete(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.appendingPathComponent("done").path) }

    func testMissingTargetIsRestoredFromTheNewestCompleteCopy() throws {
        try leftover(".ckpt.old-\(Self.deadPID)-1", complete: true, content: 1)
        usleep(20_000)
        try leftover(".ckpt.tmp-\(Self.deadPID)-2", complete: true, content: 2)
        let target = root.appendingPathComponent("ckpt")
        let lines = try AtomicDirectory.recover(target, isComplete: isComplete)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [2])
        XCTAssertEqual(try entries(), ["ckpt"])
    }

    func testIncompleteCopiesAreNotRestoredButRemoved() throws {
        try leftover(".ckpt.old-\(Self.deadPID)-1", complete: true, content: 1)
        usleep(20_000)
        try leftover(".ckpt.tmp-\(Self.deadPID)-2", complete: false, content: 2)
        let target = root.appendingPathComponent("ckpt")
        _ = try AtomicDirectory.recover(target, isComplete: isComplete)
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [1])
        XCTAssertEqual(try entries(), ["ckpt"])
    }

    func testStaleLeftoversBesideAnIntactTargetAreRemoved() throws {
        try AtomicDirectory.write(["a": [7]], to: root.appendingPathComponent("ckpt"))
        try leftover(".ckpt.tmp-\(Self.deadPID)-2", complete: false, content: 2)
        try leftover(".ckpt.old-\(Self.deadPID)-3", complete: true, content: 3)
        try leftover(".ckpt.tmp-\(getpid())-4", complete: false, content: 4)     // a live writer: kept
        try leftover(".other.tmp-\(Self.deadPID)-5", complete: true, content: 5) // another name: kept
        try leftover(".ckpt.tmp-notapid-6", complete: true, content: 6)          // not ours: kept
        let lines = try AtomicDirectory.recover(root.appendingPathComponent("ckpt"), isComplete: isComplete)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("removed ") && $0.contains("\(Self.deadPID)") }, "\(lines)")
        XCTAssertEqual(try AtomicDirectory.read("a", in: root.appendingPathComponent("ckpt")), [7])
        XCTAssertEqual(try entries(), [".ckpt.tmp-\(getpid())-4", ".ckpt.tmp-notapid-6", ".other.tmp-\(Self.deadPID)-5", "ckpt"])
    }

    func testVerifyFailureKeepsTheOldDirectory() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1]], to: target)
        struct Refused: Error {}
        XCTAssertThrowsError(try AtomicDirectory.write(["a": [2]], to: target) { written in
            XCTAssertEqual(try AtomicDirectory.read("a", in: written), [2])
            throw Refused()
        }) { error in XCTAssertTrue(error is Refused) }
        XCTAssertEqual(try AtomicDirectory.read("a", in: target), [1])
        XCTAssertEqual(try entries(), ["ckpt"])
    }

    func testFIFOIsRefusedWithoutBlocking() throws {
        let target = root.appendingPathComponent("ckpt")
        try AtomicDirectory.write(["a": [1]], to: target)
        XCTAssertEqual(mkfifo(target.appendingPathComponent("fifo").path, 0o644), 0)
        XCTAssertThrowsError(try AtomicDirectory.read("fifo", in: target)) { error in
            XCTAssertEqual(error as? AtomicDirectoryError,
                           .notRegularFile(path: target.appendingPathComponent("fifo").path, kind: "FIFO"))
        }
    }
}
