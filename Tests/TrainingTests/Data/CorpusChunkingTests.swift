import Foundation
@testable import Training
import XCTest

/// Decoding in chunks (`Corpus.init(utf8:name:chunkBytes:)`) gives what decoding the whole text
/// at once gives: the same ids, vocabulary and digest, and for broken UTF-8 the same failure,
/// wherever the chunk boundaries fall (inside multi-byte sequences included).
final class CorpusChunkingTests: XCTestCase {
    static func corpus(_ bytes: [UInt8], chunk: Int) throws(StrictUTF8.Failure) -> Corpus {
        try bytes.withUnsafeBufferPointer { buffer throws(StrictUTF8.Failure) in
            try Corpus(utf8: buffer, name: "t", chunkBytes: chunk)
        }
    }

    func testChunksOfAnySizeGiveTheWholeTextsIds() throws {
        let pieces = ["a", "b", " ", "\n", "é", "ß", "中", "文", "😀", "𝄞", "\u{7FF}", "\u{800}", "\u{FFFF}", "\u{10000}"]
        var state: UInt64 = 7
        for length in [1, 2, 5, 17, 64] {
            var text = ""
            for _ in 0..<length {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                text += pieces[Int(state >> 33) % pieces.count]
            }
            let bytes = Array(text.utf8)
            // Independent expectation: the scalars, ids by sorted distinct code point.
            let scalars = Array(text.unicodeScalars)
            let sorted = Set(scalars.map(\.value)).sorted()
            let expected = scalars.map { Int32(sorted.firstIndex(of: $0.value)!) }
            for chunk in [1, 2, 3, 4, 5, 7, 8, 13, 1 << 22] {
                let c = try Self.corpus(bytes, chunk: chunk)
                XCTAssertEqual(Array(c.tokens), expected, "\(text.debugDescription) in chunks of \(chunk)")
                XCTAssertEqual(c.vocabulary.scalars.map(\.value), sorted)
                XCTAssertEqual(c.digest, Corpus(text: text, name: "t").digest)
            }
        }
    }

    func testBrokenUTF8FailsAtTheSameByteInAnyChunking() {
        let good = Array("ab中😀é".utf8)   // 1, 1, 3, 4, 2 bytes
        var cases: [[UInt8]] = []
        for cut in 1..<good.count {
            cases.append(Array(good[..<cut]))                               // cut off at every byte
            cases.append(Array(good[..<cut]) + [0x80] + good[cut...])       // a stray continuation byte
            cases.append(Array(good[..<cut]) + [0xE4, 0x41] + good[cut...]) // a lead without its continuation
        }
        cases.append(good + [0x80, 0x80, 0x80, 0x80, 0x80])                 // continuation bytes in a row
        cases.append([0xF0, 0x9F, 0x98, 0x80, 0x80, 0x80, 0x80, 0x41])
        var failures = 0
        for bytes in cases {
            let whole: StrictUTF8.Failure?
            do { _ = try Self.corpus(bytes, chunk: 1 << 22); whole = nil } catch { whole = error }
            if whole != nil { failures += 1 }
            for chunk in 1...9 {
                do {
                    _ = try Self.corpus(bytes, chunk: chunk)
                    XCTAssertNil(whole, "\(bytes) in chunks of \(chunk) decoded; whole: \(String(describing: whole))")
                } catch {
                    XCTAssertEqual(error, whole, "\(bytes) in chunks of \(chunk)")
                }
            }
        }
        XCTAssertGreaterThan(failures, 2 * (good.count - 1), "the broken cases fail")
    }
}
