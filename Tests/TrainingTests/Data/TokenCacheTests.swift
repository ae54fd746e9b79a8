import Foundation
import TestSupport
@testable import Training
import XCTest

/// Token files: written on the first load, mapped on the next (same ids, vocabulary and
/// digest as decoding), rewritten when the corpus changes; 1 byte per token up to 256
/// symbols, 2 above.
final class TokenCacheTests: XCTestCase {
    let directory = TemporaryDirectory("recur-tokens")

    func load(_ path: String, _ lines: inout [String]) throws -> Corpus {
        try Corpus.load(path: path, cache: TokenCache(directory: directory.child("cache"), minimumBytes: 0)) { lines.append($0) }
    }

    func testTheTokenFileIsWrittenOnceThenMapped() throws {
        let path = directory.child("corpus.txt").path
        try Data(CorpusTestsText.text.utf8).write(to: URL(fileURLWithPath: path))
        let decoded = try Corpus.load(path: path)
        var lines: [String] = []
        let first = try load(path, &lines)
        let second = try load(path, &lines)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        XCTAssertTrue(lines[0].hasPrefix("encoded \(path)"), "\(lines)")
        XCTAssertTrue(lines[1].hasPrefix("tokens of \(path) mapped from"), "\(lines)")
        for corpus in [first, second] {
            XCTAssertEqual(corpus.tokens, decoded.tokens)
            XCTAssertEqual(corpus.vocabulary, decoded.vocabulary)
            XCTAssertEqual(corpus.digest, decoded.digest)
            XCTAssertEqual(corpus.tokens.width, 1)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.child("cache").path)
        XCTAssertEqual(files.count, 1, "\(files)")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: directory.child("cache/\(files[0])").path)[.size] as? Int)
        XCTAssertEqual((size - decoded.count) % 4096, 0, "header page(s), then 1 byte per token")
        XCTAssertGreaterThanOrEqual(size - decoded.count, 4096)

        // Another content under the same name is encoded again.
        sleep(1)
        try Data((CorpusTestsText.text + "zz\n").utf8).write(to: URL(fileURLWithPath: path))
        let changed = try load(path, &lines)
        XCTAssertTrue(lines[2].hasPrefix("encoded"), "\(lines)")
        XCTAssertEqual(changed.count, decoded.count + 3)
        XCTAssertEqual(changed.tokens, try Corpus.load(path: path).tokens)
    }

    func testWideVocabulariesTakeTwoBytesPerToken() throws {
        let text = String(String.UnicodeScalarView((0..<300).map { Unicode.Scalar(0x4E00 + $0)! })) + "\n"
        let path = directory.child("wide.txt").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        var lines: [String] = []
        _ = try load(path, &lines)
        let mapped = try load(path, &lines)
        XCTAssertEqual(mapped.tokens.width, 2)
        XCTAssertEqual(mapped.tokens, try Corpus.load(path: path).tokens)
        XCTAssertEqual(mapped.vocabulary.decode(mapped.tokens), text)
    }
}

/// ~20 KB of text over a small alphabet.
enum CorpusTestsText {
    static let text: String = {
        var random = FixtureRandom(seed: 3)
        let words = ["alpha", "beta", "gamma", "delta", "the", "of", "and"]
        var text = ""
        while text.utf8.count < 20_000 { text += words[random.index(words.count)] + (random.index(9) == 0 ? ".\n" : " ") }
        return text
    }()
}
