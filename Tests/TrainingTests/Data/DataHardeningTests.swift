import Foundation
import Recurrent
import TestSupport
@_spi(Fuzzing) import Training
import XCTest

/// Issue 21's data-side items at the library level: a byte order mark (item 6), CR LF label
/// files (item 7), the streaming line reader behind `predict` (item 11) and label names that
/// would break `predict`'s output (item 12). The command-line side is `DataHardeningCLITests`.
final class DataHardeningTests: XCTestCase {
    static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// A checkpoint whose vocabulary holds `vocabularyText`'s scalars (and labels, when given).
    static func checkpoint(vocabularyText: String, labels: [String] = []) -> Checkpoint {
        var config = TrainingFixtures.config(cell: .gru, layers: 1, hidden: 3, streams: 2, chunkStreams: 1, steps: 9)
        if !labels.isEmpty { config.task = .classify }
        let vocabulary = Vocabulary(of: vocabularyText)
        let model = config.model(vocabularySize: vocabulary.count, labelCount: labels.isEmpty ? nil : labels.count)
        let parameters = (0..<ParameterLayout(model).count).map { Float($0 % 7) * 0.25 - 0.75 }
        return Checkpoint(model: model, vocabulary: vocabulary, parameters: parameters, labels: labels)
    }

    // MARK: Item 6: byte order mark

    /// U+FEFF in a vocabulary (a BOM inside a text) and at the start of a label survives the
    /// checkpoint: the header's JSON used to lose it on reading ("vocabulary entry 2 must be one
    /// Unicode scalar, got 0"), so every checkpoint write failed its read-back.
    func testItem6ByteOrderMarkInVocabularyAndLabelsSurvivesTheCheckpoint() throws {
        let directory = TemporaryDirectory()
        for (text, labels) in [("ab\u{FEFF}\n", []), ("\u{FEFF}", []), ("x\u{FEFF}\t", ["\u{FEFF}pos", "neg"])] {
            let checkpoint = Self.checkpoint(vocabularyText: text, labels: labels)
            let url = directory.child("c\(text.unicodeScalars.count)-\(labels.count)")
            try checkpoint.write(to: url)
            let read = try Checkpoint.read(from: url)
            XCTAssertEqual(read.vocabulary, checkpoint.vocabulary, text.debugDescription)
            XCTAssertEqual(read.labels, labels)
        }
    }

    /// A header written by another tool with a raw U+FEFF right after an escape (where
    /// Foundation's JSON parser dropped it) reads as written.
    func testItem6RawByteOrderMarkInAForeignHeaderReads() throws {
        let metadata = "[\"\\n\",\"\u{FEFF}\"]"   // as Python's json.dumps(ensure_ascii=False) writes it
        let (_, read) = try Safetensors.decode(Safetensors.encode(tensors: [], metadata: ["vocabulary": metadata]))
        XCTAssertEqual(read["vocabulary"].map { Array($0.unicodeScalars) }, Array(metadata.unicodeScalars))
        var raw = Array("{\"__metadata__\":{\"v\":\"\\\"\u{FEFF}x\"}}".utf8)
        while raw.count % 8 != 0 { raw.append(0x20) }
        let file = withUnsafeBytes(of: UInt64(raw.count).littleEndian) { Array($0) } + raw
        XCTAssertEqual(try Safetensors.decode(file).metadata["v"], "\"\u{FEFF}x")
    }

    /// A leading BOM is not text: the corpus is the text after it (so a label file's first
    /// label is not "\u{FEFF}pos"), the digest is the file's, offsets of bad bytes count from
    /// the file's first byte, and a file of only a BOM is empty.
    func testItem6LeadingByteOrderMarkIsNotPartOfTheCorpus() throws {
        let corpus = try Corpus.decode(Self.bom + Array("pos\tab\n".utf8), name: "bom")
        XCTAssertEqual(corpus.count, 7)
        XCTAssertFalse(corpus.vocabulary.scalars.contains("\u{FEFF}"))
        XCTAssertEqual(corpus.digest, SHA256.hex(Self.bom + Array("pos\tab\n".utf8)))
        XCTAssertEqual(try LabelledExamples.parse(corpus).labels, ["pos"])
        // Only the first one: a BOM after it is an ordinary scalar.
        let twice = try Corpus.decode(Self.bom + Self.bom + [0x61], name: "twice")
        XCTAssertEqual(twice.vocabulary.decode(twice.tokens), "\u{FEFF}a")
        XCTAssertThrowsError(try Corpus.decode(Self.bom, name: "only")) { XCTAssertEqual($0 as? CorpusError, .empty(path: "only")) }
        XCTAssertThrowsError(try Corpus.decode(Self.bom + [0x61, 0xFF], name: "bad")) { error in
            guard case CorpusError.invalidUTF8(_, let offset, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(offset, 4)
        }
    }

    /// A token file of a BOM corpus maps to the tokens decoding gives, without the BOM; it is a
    /// version 2 file (a version 1 token file, which held the BOM as a token, is not read).
    func testItem6TokenFileOfByteOrderMarkCorpusMatchesDecoding() throws {
        let directory = TemporaryDirectory()
        let path = directory.child("bom.txt").path
        try Data(Self.bom + Array(String(repeating: "to be or not\n", count: 100).utf8)).write(to: URL(fileURLWithPath: path))
        let cache = TokenCache(directory: directory.child("cache"), minimumBytes: 1)
        let decoded = try Corpus.load(path: path)
        let written = try Corpus.load(path: path, cache: cache)
        let mapped = try Corpus.load(path: path, cache: cache)
        XCTAssertFalse(decoded.vocabulary.scalars.contains("\u{FEFF}"))
        let files = try FileManager.default.contentsOfDirectory(atPath: cache.directory.path)
        XCTAssertEqual(files.count, 1)
        let head = try Data(contentsOf: cache.directory.appendingPathComponent(files[0])).prefix(8)
        XCTAssertEqual(String(decoding: head, as: UTF8.self), "RECURTK2")
        for corpus in [written, mapped] {
            XCTAssertEqual(corpus.vocabulary, decoded.vocabulary)
            XCTAssertEqual(Array(corpus.tokens), Array(decoded.tokens))
            XCTAssertEqual(corpus.digest, decoded.digest)
        }
    }

    // MARK: Item 7: one line splitter

    /// A CR LF label file is the same lines for training (`parse`), `--val-data` and `eval`
    /// (`read`): the CR is the line end, not text. `read` used to see one line.
    func testItem7CRLFLabelFileIsTheSameLinesEverywhere() throws {
        let lines = (0..<40).map { "\($0 % 2 == 0 ? "pos" : "neg")\tsome text \($0)" }
        for end in ["\n", "\r\n"] {
            let text = lines.joined(separator: end) + end
            let corpus = Corpus(text: text, name: "crlf")
            let (labels, trained) = try LabelledExamples.parse(corpus)
            let read = try LabelledExamples.read(text: text, name: "crlf", vocabulary: corpus.vocabulary, labels: labels)
            XCTAssertEqual(trained.count, 40, end.debugDescription)
            XCTAssertEqual(read.count, 40, end.debugDescription)
            XCTAssertEqual(trained.map(\.label), read.examples.map(\.label))
            for (t, r) in zip(trained, read.examples) {
                XCTAssertEqual(corpus.tokens[t.start..<(t.start + t.count)].map { $0 }, read.tokens[r.start..<(r.start + r.count)].map { $0 })
            }
            XCTAssertFalse(corpus.vocabulary.decode(corpus.tokens[trained[0].start..<(trained[0].start + trained[0].count)]).contains("\r"))
        }
    }

    /// A CR not followed by LF (classic Mac line ends, or a stray CR) is an error naming its
    /// line, in training and in reading alike; a CR just before the end of the input is a
    /// line end.
    func testItem7LoneCarriageReturnIsAnErrorNamingItsLine() throws {
        for (text, line) in [("a\tx\r\nb\ty\rc\tz\r\n", 2), ("a\tx\rb\ty\r", 1), ("a\tx\nb\tx\ry\n", 2)] {
            XCTAssertThrowsError(try LabelledExamples.parse(Corpus(text: text, name: "cr"))) { error in
                XCTAssertEqual(error as? CorpusError, .badExample(path: "cr", line: line, reason: TextLines.loneCarriageReturn), text.debugDescription)
            }
            XCTAssertThrowsError(try LabelledExamples.read(text: text, name: "cr", vocabulary: Vocabulary(of: text), labels: ["a", "b"])) { error in
                XCTAssertEqual(error as? CorpusError, .badExample(path: "cr", line: line, reason: TextLines.loneCarriageReturn), text.debugDescription)
            }
        }
        XCTAssertEqual(try LabelledExamples.parse(Corpus(text: "a\tx\r\nb\ty\r", name: "end")).examples.map(\.count), [1, 1])
    }

    // MARK: Item 11: streaming lines

    /// Every way of cutting the input into reads gives the same lines: LF and CR LF ends, a
    /// final line without LF, a leading BOM dropped (only on line 1), NUL kept as text.
    func testItem11LineReaderGivesTheSameLinesForEveryReadSize() throws {
        let input = Self.bom + Array("one\r\ntwo\n\nthr\u{0}ee\u{FEFF}\r\n\u{FEFF}four é😀".utf8)
        let expected = ["one", "two", "", "thr\u{0}ee\u{FEFF}", "\u{FEFF}four é😀"]
        for readBytes in 1...9 {
            let reader = LineReader(bytes: input, name: "in", readBytes: readBytes)
            var lines: [String] = []
            while let line = try reader.next() { lines.append(line) }
            XCTAssertEqual(lines, expected, "read size \(readBytes)")
            XCTAssertEqual(reader.lineNumber, 5)
        }
    }

    /// A line over the limit is an error naming it, found before the line is held whole; a
    /// line of exactly the limit (plus its CR LF) is read. Invalid UTF-8 names line and offset.
    func testItem11LongAndInvalidLinesAreErrorsNamingTheLine() throws {
        func lines(_ bytes: [UInt8], limit: Int = 8) throws -> [String] {
            let reader = LineReader(bytes: bytes, name: "in", readBytes: 3, maximumLineBytes: limit)
            var out: [String] = []
            while let line = try reader.next() { out.append(line) }
            return out
        }
        XCTAssertEqual(try lines(Array("12345678\r\nab".utf8)), ["12345678", "ab"])
        XCTAssertEqual(try lines(Self.bom + Array("12345678".utf8)), ["12345678"])
        for input in [Array("ab\n123456789\n".utf8), Array("ab\n".utf8) + [UInt8](repeating: 0x61, count: 10_000)] {
            XCTAssertThrowsError(try lines(input)) { error in
                XCTAssertEqual(error as? CorpusError, .badExample(path: "in", line: 2, reason: TextLines.tooLong(limit: 8)))
            }
        }
        XCTAssertThrowsError(try lines(Array("ok\nab".utf8) + [0xE2, 0x82] + [0x0A])) { error in
            XCTAssertEqual(error as? CorpusError, .badExample(path: "in", line: 2, reason: "not valid UTF-8: byte 0xE2 at offset 5 (sequence cut off by the end of the line)"))
        }
    }

    /// Files: a device, a directory and a missing path are refused before reading, naming the
    /// flag; a FIFO is read as a stream; a regular file over the total limit is refused by
    /// its size.
    func testItem11LineReaderRefusesDevicesAndDirectoriesAndReadsPipes() throws {
        let directory = TemporaryDirectory()
        XCTAssertThrowsError(try LineReader(path: "/dev/zero", flag: "--data")) {
            XCTAssertEqual($0 as? CorpusError, .unsupportedInput(flag: "--data", path: "/dev/zero", kind: "character device"))
        }
        XCTAssertThrowsError(try LineReader(path: directory.path, flag: "--data")) {
            XCTAssertEqual($0 as? CorpusError, .unsupportedInput(flag: "--data", path: directory.path, kind: "directory"))
        }
        XCTAssertThrowsError(try LineReader(path: directory.child("none").path, flag: "--val-data")) {
            XCTAssertEqual($0 as? CorpusError, .unreadableInput(flag: "--val-data", path: directory.child("none").path, reason: "No such file or directory"))
            XCTAssertEqual("\($0)", "cannot read --val-data \(directory.child("none").path): No such file or directory")
        }
        let file = directory.child("big.txt")
        try Data(repeating: 0x61, count: 100).write(to: file)
        XCTAssertThrowsError(try LineReader(path: file.path, flag: "--data", maximumTotalBytes: 99)) {
            XCTAssertEqual($0 as? CorpusError, .tooLarge(path: file.path, byteCount: 100, limit: 99))
        }
        let fifo = directory.child("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let writer = Thread {
            let handle = FileHandle(forWritingAtPath: fifo)!
            handle.write(Data("a\r\nb\n".utf8))
            try? handle.close()
        }
        writer.start()
        let reader = try LineReader(path: fifo, flag: "--data")
        XCTAssertEqual(try reader.next(), "a")
        XCTAssertEqual(try reader.next(), "b")
        XCTAssertNil(try reader.next())
    }

    // MARK: Item 12: label names

    /// A label with a control character (it would split predict's label<TAB>probability
    /// line, or reach a terminal as an escape) is refused in a training file, naming the line,
    /// and in a checkpoint header, naming the entry.
    func testItem12LabelsWithControlCharactersAreRefused() throws {
        XCTAssertThrowsError(try LabelledExamples.parse(Corpus(text: "ok\tx\nbad\u{1B}[2J\ty\n", name: "esc"))) { error in
            guard case CorpusError.badExample("esc", 2, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("U+001B"), reason)
        }
        for labels in [["a\tb", "c"], ["c", "line\nbreak"], ["", "c"], ["c", "\r"]] {
            let bytes = try Self.checkpoint(vocabularyText: "abc", labels: labels).modelFileBytes()
            XCTAssertThrowsError(try Checkpoint.decodeModelFile(bytes), "\(labels)") { error in
                XCTAssertTrue("\(error)".contains("labels entry"), "\(error)")
            }
        }
        XCTAssertEqual(try Checkpoint.decodeModelFile(Self.checkpoint(vocabularyText: "abc", labels: ["é ü", "x-y"]).modelFileBytes()).labels,
                       ["é ü", "x-y"])
    }
}
