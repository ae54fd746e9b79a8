import Recurrent
import Wire
import TestSupport
import XCTest

/// protobuf-c strings are C strings: a name with an embedded NUL would be cut there and pass
/// a comparison with its prefix. The decoder refuses any NUL in any string field.
final class EmbeddedNULTests: XCTestCase {
    /// `bytes` with the first occurrence of `marker` (same length as `replacement`) replaced.
    func patched(_ bytes: [UInt8], _ marker: String, _ replacement: [UInt8]) -> [UInt8] {
        let needle = Array(marker.utf8)
        precondition(needle.count == replacement.count)
        guard let start = (0...(bytes.count - needle.count)).first(where: { Array(bytes[$0..<($0 + needle.count)]) == needle }) else {
            preconditionFailure("marker \(marker) not in the encoding")
        }
        var out = bytes
        out.replaceSubrange(start..<(start + needle.count), with: replacement)
        return out
    }

    /// "rnn.weight_ih_l0\0x" must not match the layout's "rnn.weight_ih_l0".
    func testTensorNameWithEmbeddedNULIsRejected() throws {
        let layout = ParameterLayout(ModelConfig(cell: .rnn, vocabularySize: 3, hiddenSize: 2, layerCount: 1))
        var tensors = Fixtures.wireTensors(layout, Fixtures.randomSlab(layout, seed: 5))
        tensors[0].name = "rnn.weight_ih_l0_x"
        let clean = WireCodec.encode(.weights(Weights(step: 1, resetState: false, tensors: tensors)))
        let forged = patched(clean, "rnn.weight_ih_l0_x", Array("rnn.weight_ih_l0".utf8) + [0, UInt8(ascii: "x")])
        XCTAssertThrowsWireError(.nulInString(field: "Tensor.name")) {
            try WireCodec.decode(forged, limits: .standard)
        }
    }

    func testNULInEveryStringFieldIsRejected() throws {
        let cases: [(Message, String, String)] = [
            (.hello(Fixtures.hello), "node-1", "Hello.host"),
            (.hello(Fixtures.hello), "5d41402a", "Hello.corpus_digest"),
            (.welcome(Fixtures.welcome), "adam", "Welcome.run_config"),
            (.welcome(Fixtures.welcome), "state.h_l0", "Tensor.name"),
            (.gradientPush(Fixtures.gradientPush), "head.bias", "Tensor.name"),
            (.shutdown(Fixtures.shutdown), "finished", "Shutdown.reason"),
            (.error(Fixtures.error), "version", "Error.message"),
        ]
        for (message, marker, field) in cases {
            let bytes = WireCodec.encode(message)
            XCTAssertNoThrow(try WireCodec.decode(bytes, limits: .standard))
            let forged = patched(bytes, marker, Array(marker.utf8.dropLast()) + [0])
            XCTAssertThrowsWireError(.nulInString(field: field)) { try WireCodec.decode(forged, limits: .standard) }
        }
    }

    /// NUL bytes inside tensor data (a bytes field) are ordinary float bits.
    func testNULBytesInTensorDataAreFine() throws {
        let tensors = [WireTensor(name: "head.bias", shape: [2], values: [0, 0])]
        let bytes = WireCodec.encode(.weights(Weights(step: 1, resetState: false, tensors: tensors)))
        XCTAssertNoThrow(try WireCodec.decode(bytes, limits: .standard))
    }
}
