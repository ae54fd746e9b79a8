import Wire
import TestSupport
import XCTest

/// What a buggy or hostile peer can send: every case throws a typed error, none traps.
final class MalformedInputTests: XCTestCase {
    func testEmptyMessageIsRejected() {
        XCTAssertThrowsWireError(.emptyMessage) { try WireCodec.decode([], limits: .standard) }
    }

    func testEveryPrefixOfAValidMessageThrows() throws {
        let bytes = WireCodec.encode(.gradientPush(Fixtures.gradientPush))
        XCTAssertNoThrow(try WireCodec.decode(bytes, limits: .standard))
        for length in 0..<bytes.count {
            do {
                _ = try WireCodec.decode(Array(bytes[..<length]), limits: .standard)
                XCTFail("prefix of \(length) of \(bytes.count) bytes decoded")
            } catch let error as WireError {
                XCTAssert([.emptyMessage, .malformed(byteCount: length), .missingBody].contains(error), "\(error)")
            }
        }
    }

    func testRandomGarbageThrowsOrDecodesToSomethingValid() {
        var generator = FixtureRandom(seed: 20240917)
        var thrown = 0
        let valid = WireCodec.encode(.welcome(Fixtures.welcome))
        for trial in 0..<3000 {
            var bytes: [UInt8]
            if trial % 2 == 0 {
                bytes = (0..<Int.random(in: 1...96, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                bytes = valid  // a few flipped bytes reach deeper into the parser than pure noise
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            do {
                let decoded = try WireCodec.decode(bytes, limits: .standard)
                // Whatever decoded must be a well-formed message: it re-encodes and decodes alike.
                let again = try WireCodec.decode(WireCodec.encode(decoded.message), limits: .standard)
                XCTAssertEqual(again.kind, decoded.kind)
                XCTAssertEqual(again.summary, decoded.summary)
            } catch is WireError {
                thrown += 1
            } catch {
                XCTFail("untyped error \(error)")
            }
        }
        XCTAssertGreaterThan(thrown, 1500, "most garbage must be rejected")
    }

    func testOversizedMessageIsRejectedBeforeParsing() throws {
        let bytes = WireCodec.encode(.weights(Fixtures.weights))
        let limit = bytes.count - 1
        XCTAssertThrowsWireError(.messageTooLarge(byteCount: bytes.count, limit: limit)) {
            try WireCodec.decode(bytes, limits: DecodeLimits(maxMessageBytes: limit, maxTensorElements: 100))
        }
        XCTAssertNoThrow(try WireCodec.decode(bytes, limits: DecodeLimits(maxMessageBytes: bytes.count, maxTensorElements: 6)))
    }

    func testWrongVersionNamesBothVersions() {
        var bytes = WireCodec.encode(.heartbeat(Fixtures.heartbeat))
        XCTAssertEqual(Array(bytes[0..<2]), [0x08, 0x06], "version is the first field")
        bytes[1] = 1
        XCTAssertThrowsWireError(.versionMismatch(received: 1, expected: 6)) {
            try WireCodec.decode(bytes, limits: .standard)
        }
        let withoutVersion = Array(bytes[2...])
        XCTAssertThrowsWireError(.versionMismatch(received: 0, expected: 6)) {
            try WireCodec.decode(withoutVersion, limits: .standard)
        }
    }

    func testMissingOrUnknownBodyIsRejected() {
        XCTAssertThrowsWireError(.missingBody) { try WireCodec.decode([0x08, 0x06], limits: .standard) }
        // field 13 (a body type from a future version): skipped by the parser, so no body.
        XCTAssertThrowsWireError(.missingBody) { try WireCodec.decode([0x08, 0x06, 0x6a, 0x00], limits: .standard) }
    }

    func testTensorByteCountMustMatchShape() {
        let bytes = Fixtures.rawWeightsEnvelope(name: "rnn.weight_hh_l0", shape: [2, 3], data: [UInt8](repeating: 1, count: 20))
        XCTAssertThrowsWireError(.tensorByteCountMismatch(name: "rnn.weight_hh_l0", shape: [2, 3], byteCount: 20)) {
            try WireCodec.decode(bytes, limits: .standard)
        }
    }

    func testTensorWithAZeroDimensionIsRejected() {
        let bytes = Fixtures.rawWeightsEnvelope(name: "x", shape: [2, 0], data: [])
        XCTAssertThrowsWireError(.tensorShapeInvalid(name: "x", shape: [2, 0])) {
            try WireCodec.decode(bytes, limits: .standard)
        }
    }

    func testTensorElementCountIsBoundedWithoutOverflow() {
        let limit = DecodeLimits.standard.maxTensorElements
        for shape: [UInt64] in [[1 << 20, 1 << 20], [UInt64.max], [1 << 40, 1 << 40], [3, 1 << 62, 4]] {
            let bytes = Fixtures.rawWeightsEnvelope(name: "huge", shape: shape, data: [0, 0, 0, 0])
            XCTAssertThrowsWireError(.tensorTooLarge(name: "huge", shape: shape, limit: limit)) {
                try WireCodec.decode(bytes, limits: .standard)
            }
        }
        let bytes = WireCodec.encode(.weights(Fixtures.weights))
        XCTAssertThrowsWireError(.tensorTooLarge(name: "rnn.weight_ih_l0", shape: [2, 3], limit: 5)) {
            try WireCodec.decode(bytes, limits: DecodeLimits(maxMessageBytes: 1 << 20, maxTensorElements: 5))
        }
    }

    func testBadStateTensorInAWelcomeIsRejected() {
        // The same checks guard every tensor list, not only weights.
        var welcome = Fixtures.welcome
        welcome.state = [WireTensor(name: "state.h_l0", shape: [4, 4], values: [Float](repeating: 0, count: 16))]
        let bytes = WireCodec.encode(.welcome(welcome))
        XCTAssertThrowsWireError(.tensorTooLarge(name: "state.h_l0", shape: [4, 4], limit: 15)) {
            try WireCodec.decode(bytes, limits: DecodeLimits(maxMessageBytes: 1 << 20, maxTensorElements: 15))
        }
    }
}
