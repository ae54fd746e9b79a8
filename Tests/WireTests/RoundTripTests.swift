import Wire
import XCTest

final class RoundTripTests: XCTestCase {
    func testEveryMessageTypeRoundTripsWithAllFields() throws {
        for message in Fixtures.allMessages {
            let bytes = WireCodec.encode(message)
            let decoded = try WireCodec.decode(bytes, limits: .standard)
            XCTAssertEqual(decoded.kind, message.kind)
            XCTAssertEqual(decoded.message, message, "\(message.kind)")
        }
    }

    /// A classifier's shard setup carries its label count (the head's rows fix the shard's
    /// range); a language model's leaves it 0.
    func testShardSetupCarriesTheLabelCount() throws {
        for labels: UInt32 in [0, 7] {
            let setup = ShardSetup(runConfig: "{}", shard: 1, shardCount: 2, step: 3, workerCount: 2,
                                   parameters: WireTensor(name: "slab", shape: [2], values: [1, -2]), optimizerState: [],
                                   optimizerSteps: 3, joinToken: "t", vocabularySize: 65, labelCount: labels)
            guard case .shardSetup(let decoded) = try WireCodec.decode(WireCodec.encode(.shardSetup(setup)), limits: .standard).message else {
                return XCTFail("not a shard setup")
            }
            XCTAssertEqual(decoded, setup)
            XCTAssertEqual(decoded.labelCount, labels)
        }
    }

    func testDefaultValuedFieldsStillDecodeAsTheirType() throws {
        // proto3 omits zero fields: the body must survive as an empty sub-message.
        let messages: [Message] = [
            .heartbeat(Heartbeat(rank: 0, step: 0)),
            .shutdown(Shutdown(reason: "")),
            .weights(Weights(step: 0, resetState: false, tensors: [])),
            .gradientPush(GradientPush(step: 0, tokenCount: 0, lossSum: 0, tensors: [],
                                       computeSeconds: 0, communicateSeconds: 0)),
        ]
        for message in messages {
            XCTAssertEqual(try WireCodec.decode(WireCodec.encode(message), limits: .standard).message, message)
        }
    }

    func testHeartbeatBytesMatchTheHandEncodedEnvelope() {
        // version (field 1, varint) = 6; heartbeat (field 6, length 4) { rank = 1; step = 2 }
        XCTAssertEqual(WireCodec.encode(.heartbeat(Heartbeat(rank: 1, step: 2))),
                       [0x08, 0x06, 0x32, 0x04, 0x08, 0x01, 0x10, 0x02])
    }

    func testSpecialFloatsSurviveBitExactly() throws {
        let values: [Float] = [.nan, -.nan, Float(bitPattern: 0x7FC0_1234), -0.0, .leastNonzeroMagnitude, .infinity]
        let message = Message.weights(Weights(step: 1, resetState: false, tensors: [
            WireTensor(name: "x", shape: [6], values: values),
        ]))
        guard case .weights(let weights) = try WireCodec.decode(WireCodec.encode(message), limits: .standard) else {
            return XCTFail("not weights")
        }
        XCTAssertEqual(bitPatterns(weights.message.tensors[0].values), bitPatterns(values))
    }

    func testDecodedMessageOwnsItsDataAfterTheInputIsOverwritten() throws {
        var bytes = WireCodec.encode(.gradientPush(Fixtures.gradientPush))
        let decoded = try WireCodec.decode(bytes, limits: .standard)
        for index in bytes.indices { bytes[index] = 0 }
        XCTAssertEqual(decoded.message, .gradientPush(Fixtures.gradientPush))
    }

    func testSummariesNameTypeStepAndSizeButNoValues() throws {
        XCTAssertEqual(Message.weights(Fixtures.weights).summary,
                       "weights step 9: 2 tensors (36 B), reset_state")
        XCTAssertEqual(Message.heartbeat(Fixtures.heartbeat).summary, "heartbeat: rank 2 step 99")
        XCTAssertEqual(Message.gradientPush(Fixtures.gradientPush).summary,
                       "gradient_push step 9: 2 tensors (36 B), 512 tokens, loss_sum 1234.5625, "
                           + "compute 0.25 s, communicate 0.125 s, 2 state tensors (48 B)")
        XCTAssertEqual(Fixtures.state[0].description, "state.h_l0 [2,3] (24 B)")
        for message in Fixtures.allMessages {
            let decoded = try WireCodec.decode(WireCodec.encode(message), limits: .standard)
            XCTAssertEqual(decoded.summary, message.summary, "decoded and value forms print alike")
            XCTAssertFalse(message.summary.contains("3.75"), "a tensor value leaked into \(message.summary)")
        }
    }

    func testFingerprintMismatchNamesEachDifferingField() {
        XCTAssertNil(Fixtures.hello.fingerprintMismatch(expected: Fixtures.hello))
        var other = Fixtures.hello
        other.host = "node-2"  // not part of the fingerprint
        XCTAssertNil(other.fingerprintMismatch(expected: Fixtures.hello))
        other.corpusDigest = "00112233445566778899"
        other.vocabularyDigest = "ffeeddccbbaa99887766"
        let error = other.fingerprintMismatch(expected: Fixtures.hello)
        XCTAssertEqual(error?.description,
                       "worker fingerprint differs: corpus_digest 001122334455 (coordinator 5d41402abc4b); "
                           + "vocabulary_digest ffeeddccbbaa (coordinator 9f86d081884c)")
    }

    func testErrorDescriptionsAreOneClearLine() {
        let cases: [(WireError, String)] = [
            (.emptyMessage, "empty message (0 bytes)"),
            (.malformed(byteCount: 17), "truncated or malformed message (17 bytes)"),
            (.versionMismatch(received: 3, expected: 2), "protocol version 3, expected 2"),
            (.messageTooLarge(byteCount: 2048, limit: 1024), "message of 2048 bytes exceeds the limit of 1024 bytes"),
            (.tensorShapeMismatch(name: "rnn.weight_hh_l0", received: [4, 3], expected: [1024, 256]),
             "tensor rnn.weight_hh_l0: shape [4,3], expected [1024,256]"),
            (.tensorByteCountMismatch(name: "head.bias", shape: [65], byteCount: 256),
             "tensor head.bias: shape [65] needs 260 bytes, got 256"),
            (.tensorCountMismatch(received: 5, expected: 6), "5 tensors, expected 6"),
            (.tensorNameMismatch(index: 2, received: "rnn.bias_hh_l0", expected: "rnn.bias_ih_l0"),
             "tensor 2 is rnn.bias_hh_l0, expected rnn.bias_ih_l0"),
            (.unexpectedStep(kind: .gradientPush, received: 7, expected: 8), "gradient for step 7, expected step 8"),
        ]
        for (error, text) in cases {
            XCTAssertEqual(error.description, text)
        }
    }
}
