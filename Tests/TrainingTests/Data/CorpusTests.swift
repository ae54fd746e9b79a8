import Foundation
import XCTest
import Training

final class CorpusTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("recur-corpus-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    private func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// The repository's Tiny Shakespeare (data/README.md), found from this source file:
    /// <root>/Tests/TrainingTests/Data/CorpusTests.swift → <root>/data/tinyshakespeare.txt.
    private static let shakespearePath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("data/tinyshakespeare.txt").path

    /// Counts and digest as Python reports them (len(text), len(set(text)), hashlib.sha256).
    func testTinyShakespeare() throws {
        let corpus = try Corpus.load(path: Self.shakespearePath)
        XCTAssertEqual(corpus.count, 1_115_394)
        XCTAssertEqual(corpus.vocabulary.count, 65)
        XCTAssertEqual(corpus.digest, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
        XCTAssertEqual(corpus.name, Self.shakespearePath)
        XCTAssertEqual(corpus.vocabulary.scalars.first, "\n")
        XCTAssertEqual(corpus.vocabulary.decode(corpus.tokens.prefix(14)), "First Citizen:")
        let (train, validation) = corpus.split(validationFraction: 0.1)
        XCTAssertEqual(train.count, 1_003_854)
        XCTAssertEqual(validation.count, 1_115_394 - 1_003_854)
        XCTAssertEqual(Array(train) + Array(validation), Array(corpus.tokens))
    }

    /// "\r\n" is two scalars; ids follow code-point order; the digest is that of the file bytes
    /// (Python: hashlib.sha256("héllo\r\nwörld".encode())).
    func testLoadSplitsIntoScalars() throws {
        let text = "héllo\r\nwörld"
        let corpus = try Corpus.load(path: file("small.txt", Array(text.utf8)))
        XCTAssertEqual(corpus.count, 12)
        XCTAssertEqual(String(String.UnicodeScalarView(corpus.vocabulary.scalars)), "\n\rdhlorwéö")
        XCTAssertEqual(corpus.tokens, [3, 8, 4, 4, 5, 1, 0, 7, 9, 6, 4, 2])
        XCTAssertEqual(corpus.digest, "1b2ae4a4e8a40f32281c6f4b7ff9ea69d08cb0ab5ded17c76b5446de386cde55")

        let inMemory = Corpus(text: text, name: "memory")
        XCTAssertEqual(inMemory.tokens, corpus.tokens)
        XCTAssertEqual(inMemory.vocabulary, corpus.vocabulary)
        XCTAssertEqual(inMemory.digest, corpus.digest)
        XCTAssertEqual(inMemory.name, "memory")
    }

    func testMissingEmptyAndDirectory() throws {
        let missing = directory.appendingPathComponent("nope.txt").path
        XCTAssertThrowsError(try Corpus.load(path: missing)) { error in
            XCTAssertEqual(error as? CorpusError, .unreadable(path: missing, reason: "No such file or directory"))
            XCTAssertEqual("\(error)", "cannot read corpus \(missing): No such file or directory")
        }
        let empty = try file("empty.txt", [])
        XCTAssertThrowsError(try Corpus.load(path: empty)) { error in
            XCTAssertEqual(error as? CorpusError, .empty(path: empty))
            XCTAssertEqual("\(error)", "corpus \(empty) is empty")
        }
        XCTAssertThrowsError(try Corpus.load(path: directory.path)) { error in
            XCTAssertEqual(error as? CorpusError, .notRegularFile(path: directory.path, kind: "directory"))
        }
    }

    /// Strict UTF-8: offsets and verdicts as Python's bytes.decode("utf-8") gives them.
    func testInvalidUTF8IsRejectedWithOffset() throws {
        let cases: [(bytes: [UInt8], offset: Int, reason: String)] = [
            ([0x61, 0xFF], 1, "invalid start byte"),
            ([0x61, 0x62, 0x80], 2, "unexpected continuation byte"),
            ([0xC0, 0xAF], 0, "invalid start byte"),                  // overlong '/'
            ([0x61, 0xE0, 0x80, 0x80], 1, "invalid continuation byte"), // overlong NUL
            ([0xED, 0xA0, 0x80], 0, "invalid continuation byte"),       // surrogate U+D800
            ([0xF4, 0x90, 0x80, 0x80], 0, "invalid continuation byte"), // past U+10FFFF
            ([0xC3, 0xA9, 0xE2, 0x28, 0xA1], 2, "invalid continuation byte"),
            ([0x61, 0x62, 0xE2, 0x82], 2, "sequence cut off by the end of the file"),
        ]
        for (index, example) in cases.enumerated() {
            let path = try file("bad\(index).txt", example.bytes)
            XCTAssertThrowsError(try Corpus.load(path: path), "\(example.bytes)") { error in
                guard case .invalidUTF8(_, let offset, let byte, let reason)? = error as? CorpusError else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(offset, example.offset, "\(example.bytes)")
                XCTAssertEqual(byte, example.bytes[example.offset], "\(example.bytes)")
                XCTAssertEqual(reason, example.reason, "\(example.bytes)")
            }
        }
        let path = try file("latin1.txt", [0x63, 0x61, 0x66, 0xE9])
        XCTAssertThrowsError(try Corpus.load(path: path)) { error in
            XCTAssertEqual("\(error)", "corpus \(path) is not valid UTF-8: byte 0xE9 at offset 3 (sequence cut off by the end of the file)")
        }
    }

    /// Edge scalars of every length decode: U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF.
    func testBoundaryScalarsDecode() throws {
        let text = "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}\u{FEFF}"
        let corpus = try Corpus.load(path: file("edges.txt", Array(text.utf8)))
        XCTAssertEqual(corpus.vocabulary.decode(corpus.tokens), text)
        XCTAssertEqual(corpus.count, 8)
        XCTAssertEqual(corpus.vocabulary.scalars.map(\.value), [0x7F, 0x80, 0x7FF, 0x800, 0xFEFF, 0xFFFF, 0x10000, 0x10FFFF])
    }

    func testSplitRule() {
        let corpus = Corpus(text: "abcdefghij", name: "ten")
        let quarter = corpus.split(validationFraction: 0.25)  // floor(10 · 0.75) = 7
        XCTAssertEqual(quarter.train, [0, 1, 2, 3, 4, 5, 6])
        XCTAssertEqual(quarter.validation, [7, 8, 9])
        let none = corpus.split(validationFraction: 0)
        XCTAssertEqual(none.train.count, 10)
        XCTAssertEqual(none.validation, [])
        XCTAssertEqual(Corpus.trainCount(total: 10, validationFraction: 0.95), 0)
        XCTAssertEqual(Corpus.trainCount(total: 3, validationFraction: 0.5), 1)
    }

    /// Needs floor((nTrain-1)/(N·T)) ≥ 1, i.e. nTrain ≥ N·T + 1.
    func testRequireTrainingLength() {
        let corpus = Corpus(text: String(repeating: "ab", count: 10), name: "twenty")
        XCTAssertNoThrow(try corpus.requireTrainingLength(streams: 2, window: 9, validationFraction: 0))
        XCTAssertNoThrow(try corpus.requireTrainingLength(streams: 19, window: 1, validationFraction: 0))
        XCTAssertThrowsError(try corpus.requireTrainingLength(streams: 2, window: 10, validationFraction: 0)) { error in
            XCTAssertEqual(error as? CorpusError, .tooShort(name: "twenty", totalCount: 20, trainCount: 20,
                                                            requiredTrainCount: 21, streams: 2, window: 10,
                                                            validationFraction: 0))
            XCTAssertEqual("\(error)", "corpus twenty is too short for 2 streams × window 10: its training split "
                + "has 20 scalars (of 20, validation fraction 0.0), at least 21 are needed (streams × window + 1); "
                + "use a longer text, fewer streams or a shorter window")
        }
        // floor(20 · 0.9) = 18 < 19.
        XCTAssertThrowsError(try corpus.requireTrainingLength(streams: 2, window: 9, validationFraction: 0.1))
    }
}
