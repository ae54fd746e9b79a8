import CWire
import Recurrent
import Wire
import TestSupport
import XCTest

enum Fixtures {
    static let hello = Hello(
        corpusDigest: "5d41402abc4b2a76b9719d911017c592ae2b4a8f1c3e5d7f9a0b1c2d3e4f5a6b",
        vocabularyDigest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        host: "node-1", pid: 4242, threads: 2)

    static let state = [
        WireTensor(name: "state.h_l0", shape: [2, 3], values: [0.5, -0.25, 1e-3, -0.0, 3.75, Float(bitPattern: 0x0001_0000)]),
        WireTensor(name: "state.c_l0", shape: [2, 3], values: [1, 2, 3, 4, 5, 6]),
    ]

    static let welcome = Welcome(
        rank: 1, workerCount: 3, runConfig: #"{"optimizer":"adam","lr":0.002,"data":"café.txt"}"#,
        streamBegin: 4, streamEnd: 8, step: 17, state: state)

    static let tensors = [
        WireTensor(name: "rnn.weight_ih_l0", shape: [2, 3], values: [0.1, -0.2, 0.3, -0.4, 0.5, -0.6]),
        WireTensor(name: "head.bias", shape: [3], values: [.infinity, -.infinity, .leastNormalMagnitude]),
    ]

    static let weights = Weights(step: 9, resetState: true, tensors: tensors)

    static let gradientPush = GradientPush(
        step: 9, tokenCount: 512, lossSum: 1234.5625, tensors: tensors, state: state,
        computeSeconds: 0.25, communicateSeconds: 0.125)

    static let heartbeat = Heartbeat(rank: 2, step: 99)
    static let shutdown = Shutdown(reason: "training finished")
    static let error = WireErrorMessage(message: "protocol version 2, expected 1")

    /// Every message type with every field set to a non-default value.
    static let allMessages: [Message] = [
        .hello(hello), .welcome(welcome), .weights(weights), .gradientPush(gradientPush),
        .heartbeat(heartbeat), .shutdown(shutdown), .error(error),
    ]

    /// A slab of `layout.count` arbitrary float bit patterns (NaN payloads, subnormals, -0 too).
    static func randomSlab(_ layout: ParameterLayout, seed: UInt64) -> [Float] {
        var generator = FixtureRandom(seed: seed)
        return (0..<layout.count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())) }
    }

    /// The slab's tensors as values, in layout order (what the slab encoder must match).
    static func wireTensors(_ layout: ParameterLayout, _ slab: [Float]) -> [WireTensor] {
        layout.slices.map { WireTensor(name: $0.name, shape: $0.shape, values: Array(slab[$0.range])) }
    }

    /// A weights envelope with one tensor exactly as given, bypassing every Swift-side check:
    /// the only way to produce the malformed tensors a buggy or hostile peer could send.
    static func rawWeightsEnvelope(version: UInt32 = WireCodec.protocolVersion, name: String, shape: [UInt64], data: [UInt8]) -> [UInt8] {
        var shape = shape, data = data
        let rank = shape.count, byteCount = data.count
        return name.withCString { cName in
            shape.withUnsafeMutableBufferPointer { shapeBuffer in
                data.withUnsafeMutableBufferPointer { dataBuffer in
                    var tensor = Recur__Tensor()
                    recur__tensor__init(&tensor)
                    tensor.name = UnsafeMutablePointer(mutating: cName)
                    tensor.n_shape = rank
                    tensor.shape = shapeBuffer.baseAddress
                    tensor.data = ProtobufCBinaryData(len: byteCount, data: dataBuffer.baseAddress)
                    return withUnsafeMutablePointer(to: &tensor) { tensorPointer in
                        var list: [UnsafeMutablePointer<Recur__Tensor>?] = [tensorPointer]
                        return list.withUnsafeMutableBufferPointer { listBuffer in
                            var weights = Recur__Weights()
                            recur__weights__init(&weights)
                            weights.step = 1
                            weights.n_tensors = 1
                            weights.tensors = listBuffer.baseAddress
                            return withUnsafeMutablePointer(to: &weights) { weightsPointer in
                                var envelope = Recur__Envelope()
                                recur__envelope__init(&envelope)
                                envelope.version = version
                                envelope.body_case = RECUR__ENVELOPE__BODY_WEIGHTS
                                envelope.weights = weightsPointer
                                let size = recur__envelope__get_packed_size(&envelope)
                                var out = [UInt8](repeating: 0, count: size)
                                let written = out.withUnsafeMutableBufferPointer {
                                    recur__envelope__pack(&envelope, $0.baseAddress!)
                                }
                                precondition(written == size)
                                return out
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Asserts that `body` throws exactly `expected`.
func XCTAssertThrowsWireError<T>(_ expected: WireError, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), nothing thrown", file: file, line: line)
    } catch let error as WireError {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got \(type(of: error)): \(error)", file: file, line: line)
    }
}

/// Bit patterns, so NaNs compare equal to themselves and -0 differs from +0.
func bitPatterns(_ values: some Sequence<Float>) -> [UInt32] { values.map(\.bitPattern) }
