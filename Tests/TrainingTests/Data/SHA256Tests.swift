import XCTest
import Training

/// FIPS 180-4 / NIST example vectors, plus block-boundary and incremental cases.
final class SHA256Tests: XCTestCase {
    func testStandardVectors() {
        XCTAssertEqual(SHA256.hex(Array("".utf8)),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                                         + "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testOneMillionA() {
        XCTAssertEqual(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Padding edge cases: 55 bytes fit one block, 56 need a second (values from Python hashlib).
    func testPaddingBoundaries() {
        XCTAssertEqual(SHA256.hex([UInt8](repeating: 0x61, count: 55)),
                       "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: 0x61, count: 56)),
                       "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: 0x61, count: 64)),
                       "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    /// Any split of the message into updates gives the one-shot digest; finalize does not
    /// disturb the hasher.
    func testIncrementalEqualsOneShot() {
        let message = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let expected = SHA256.hex(message)
        for cuts in [[0], [1, 63], [63, 64, 65], [64, 128, 200], [7, 8, 9, 299]] {
            var hasher = SHA256()
            var start = 0
            for cut in cuts + [message.count] {
                hasher.update(message[start..<cut])
                start = cut
            }
            XCTAssertEqual(SHA256.hexString(hasher.finalize()), expected, "cuts \(cuts)")
            XCTAssertEqual(SHA256.hexString(hasher.finalize()), expected, "finalize twice")
        }
        // A non-contiguous sequence takes the copying path.
        XCTAssertEqual(SHA256.hex(message.lazy.map { $0 }), expected)
        message.withUnsafeBytes { XCTAssertEqual(SHA256.hex($0), expected) }
    }
}
