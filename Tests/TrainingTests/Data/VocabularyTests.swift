import Foundation
import XCTest
import Training

final class VocabularyTests: XCTestCase {
    /// Scalars, sorted by code point: "\r\n" gives two symbols, "é" as e + U+0301 gives two.
    func testScalarsSortedByCodePoint() {
        let vocabulary = Vocabulary(of: "ba\r\nab e\u{301}€😀")
        XCTAssertEqual(vocabulary.scalars.map(\.value), [0x0A, 0x0D, 0x20, 0x61, 0x62, 0x65, 0x301, 0x20AC, 0x1F600])
        XCTAssertEqual(vocabulary.count, 9)
        XCTAssertEqual(vocabulary.id(of: "\r"), 1)
        XCTAssertEqual(vocabulary.id(of: "\u{301}"), 6)
        XCTAssertEqual(vocabulary.id(of: "€"), 7)
        XCTAssertEqual(vocabulary.id(of: "😀"), 8)
        XCTAssertNil(vocabulary.id(of: "c"))
        XCTAssertNil(vocabulary.id(of: "\u{20AD}"))
        XCTAssertNil(vocabulary.id(of: "\u{10FFFF}"))
        XCTAssertEqual(Vocabulary(scalars: ["b", "a", "b"]).scalars, ["a", "b"])
    }

    func testEncodeDecodeRoundTrip() throws {
        let text = "abe\u{301}\r\n€😀 ba"
        let vocabulary = Vocabulary(of: text)
        let ids = try vocabulary.encode(text)
        XCTAssertEqual(ids, [3, 4, 5, 6, 1, 0, 7, 8, 2, 4, 3])
        XCTAssertEqual(vocabulary.decode(ids), text)
        XCTAssertEqual(vocabulary.decode(ids).unicodeScalars.count, 11)
    }

    func testUnknownCharactersAreNamedOnce() {
        let vocabulary = Vocabulary(of: "abc")
        XCTAssertThrowsError(try vocabulary.encode("aZbéZ\n")) { error in
            XCTAssertEqual(error as? VocabularyError, .unknownCharacters(["Z", "é", "\n"]))
            XCTAssertEqual("\(error)", #"characters not in the vocabulary: "Z", "é", "\n""#)
        }
        let many = String((0..<25).map { Character(Unicode.Scalar(UInt8(ascii: "A") + UInt8($0))) })
        XCTAssertThrowsError(try vocabulary.encode(many)) { error in
            XCTAssert("\(error)".hasSuffix(#""T" and 5 more"#), "\(error)")
        }
    }

    /// Digest = SHA-256 of the scalars' UTF-8 in id order (value from Python:
    /// hashlib.sha256("\n ab€".encode()).hexdigest()).
    func testDigest() {
        XCTAssertEqual(Vocabulary(of: "b€a \n").digest,
                       "b38e6e9505321def2dc65772bd32af7ad08e331ce2cf9fe4b09aca9696f9db91")
        XCTAssertNotEqual(Vocabulary(of: "ab").digest, Vocabulary(of: "abc").digest)
    }

    func testCodableRoundTripAndValidation() throws {
        let vocabulary = Vocabulary(of: "\r\n a\u{301}😀\"")
        let json = try JSONEncoder().encode(vocabulary)
        XCTAssertEqual(try JSONDecoder().decode([String].self, from: json),
                       ["\n", "\r", " ", "\"", "a", "\u{301}", "😀"])
        XCTAssertEqual(try JSONDecoder().decode(Vocabulary.self, from: json), vocabulary)

        for bad in [#"["b","a"]"#, #"["a","a"]"#, #"["ab"]"#, #"[""]"#] {
            XCTAssertThrowsError(try JSONDecoder().decode(Vocabulary.self, from: Data(bad.utf8)), bad)
        }
    }
}
