import Recurrent
import Wire
import XCTest

/// The per-step paths: weights and gradients encoded from a parameter slab and copied back
/// into one, checked against the parameter table.
final class SlabTests: XCTestCase {
    let small = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 7, hiddenSize: 4, layerCount: 1))

    func encodeWeights(_ slab: [Float], _ layout: ParameterLayout, step: UInt64 = 3) -> [UInt8] {
        var buffer = MessageBuffer()
        slab.withUnsafeBufferPointer {
            WireCodec.encodeWeights(step: step, resetState: true,
                                    parameters: $0, layout: layout, into: &buffer)
        }
        return buffer.bytes
    }

    func decodeWeights(_ bytes: [UInt8], limits: DecodeLimits = .standard) throws -> DecodedWeights {
        guard case .weights(let weights) = try WireCodec.decode(bytes, limits: limits) else {
            throw WireError.missingBody
        }
        return weights
    }

    func testTwoLayerLSTMSlabRoundTripsBitExactly() throws {
        let layout = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 65, hiddenSize: 256, layerCount: 2))
        let slab = Fixtures.randomSlab(layout, seed: 7)
        let bytes = encodeWeights(slab, layout, step: 41)
        XCTAssertGreaterThan(bytes.count, layout.count * 4)
        XCTAssertLessThan(bytes.count, layout.count * 4 + 512, "framing is a few bytes per tensor")

        let weights = try decodeWeights(bytes, limits: DecodeLimits(layout: layout))
        XCTAssertEqual(weights.step, 41)
        XCTAssertTrue(weights.resetState)
        XCTAssertEqual(weights.tensors.names, layout.slices.map(\.name))
        XCTAssertEqual(weights.tensors.byteCount, layout.count * 4)
        var received = [Float](repeating: 42, count: layout.count)
        try received.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: layout) }
        XCTAssertEqual(bitPatterns(received), bitPatterns(slab))
    }

    func testGradientPushFromSlabRoundTripsWithState() throws {
        let slab = Fixtures.randomSlab(small, seed: 11)
        var buffer = MessageBuffer()
        slab.withUnsafeBufferPointer {
            WireCodec.encodeGradientPush(step: 8, tokenCount: 96, lossSum: 180.25, computeSeconds: 0.5,
                                         communicateSeconds: 0.0625, chunks: 2..<4, gradient: $0, layout: small,
                                         state: Fixtures.state, into: &buffer)
        }
        guard case .gradientPush(let push) = try WireCodec.decode(buffer.bytes, limits: .standard) else {
            return XCTFail("not a gradient push")
        }
        XCTAssertEqual([push.step, push.tokenCount], [8, 96])
        XCTAssertEqual([push.chunkBegin, push.chunkEnd], [2, 4])
        XCTAssertEqual([push.lossSum, push.computeSeconds, push.communicateSeconds], [180.25, 0.5, 0.0625])
        XCTAssertEqual(push.state, Fixtures.state)
        var received = [Float](repeating: 0, count: small.count)
        try received.withUnsafeMutableBufferPointer { try push.copyTensors(into: $0, layout: small) }
        XCTAssertEqual(bitPatterns(received), bitPatterns(slab))
    }

    func testSlabEncodingEqualsTheValueEncodingOfTheSameTensors() {
        // One packer behind both entry points: same bytes, tensor for tensor.
        let slab = Fixtures.randomSlab(small, seed: 3)
        let fromValues = WireCodec.encode(.weights(Weights(step: 3, resetState: true,
                                                           tensors: Fixtures.wireTensors(small, slab))))
        XCTAssertEqual(encodeWeights(slab, small, step: 3), fromValues)
    }

    func testForEachTensorViewsTheReceivedFloatsInLayoutOrder() throws {
        let slab = (0..<small.count).map { Float($0) }
        let weights = try decodeWeights(encodeWeights(slab, small))
        var visited: [String] = []
        try weights.tensors.forEachTensor(matching: small) { slice, values in
            visited.append(slice.name)
            XCTAssertEqual(Array(values), Array(slab[slice.range]))
        }
        XCTAssertEqual(visited, small.slices.map(\.name))
    }

    func testBufferIsReusedAndOnlyGrows() {
        let slab = Fixtures.randomSlab(small, seed: 5)
        var buffer = MessageBuffer()
        slab.withUnsafeBufferPointer {
            WireCodec.encodeWeights(step: 1, resetState: false, parameters: $0,
                                    layout: small, into: &buffer)
        }
        let weightsCount = buffer.count
        let storage = buffer.withUnsafeBytes { $0.baseAddress }
        XCTAssertEqual(buffer.capacity, weightsCount)

        WireCodec.encode(.heartbeat(Fixtures.heartbeat), into: &buffer)
        XCTAssertEqual(buffer.count, 8)
        XCTAssertEqual(buffer.capacity, weightsCount, "a smaller message keeps the storage")
        XCTAssertEqual(buffer.bytes, WireCodec.encode(.heartbeat(Fixtures.heartbeat)))

        slab.withUnsafeBufferPointer {
            WireCodec.encodeWeights(step: 2, resetState: false, parameters: $0,
                                    layout: small, into: &buffer)
        }
        XCTAssertEqual(buffer.count, weightsCount)
        XCTAssertEqual(buffer.withUnsafeBytes { $0.baseAddress }, storage, "same storage, no reallocation")
    }

    // MARK: Checks against the parameter table

    func testTensorCountMismatchIsRejected() throws {
        let gru = ParameterLayout(ModelConfig(cell: .gru, vocabularySize: 7, hiddenSize: 4, layerCount: 1))
        let weights = try decodeWeights(encodeWeights(Fixtures.randomSlab(small, seed: 1), small))
        var target = [Float](repeating: 0, count: gru.count)
        XCTAssertThrowsWireError(.tensorCountMismatch(received: 5, expected: 6)) {
            try target.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: gru) }
        }
    }

    func testTensorShapeMismatchNamesTheTensor() throws {
        let wider = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 7, hiddenSize: 5, layerCount: 1))
        let weights = try decodeWeights(encodeWeights(Fixtures.randomSlab(small, seed: 1), small))
        var target = [Float](repeating: 0, count: wider.count)
        XCTAssertThrowsWireError(.tensorShapeMismatch(name: "rnn.weight_ih_l0", received: [16, 7], expected: [20, 7])) {
            try target.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: wider) }
        }
    }

    func testTensorNameMismatchLeavesTheSlabUntouched() throws {
        // The wrong name is on the last tensor: nothing may be copied before it is found.
        var tensors = Fixtures.wireTensors(small, Fixtures.randomSlab(small, seed: 2))
        tensors[tensors.count - 1].name = "head.bias_typo"
        let bytes = WireCodec.encode(.weights(Weights(step: 1, resetState: false, tensors: tensors)))
        let weights = try decodeWeights(bytes)
        var target = [Float](repeating: -1, count: small.count)
        XCTAssertThrowsWireError(.tensorNameMismatch(index: 4, received: "head.bias_typo", expected: "head.bias")) {
            try target.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: small) }
        }
        XCTAssertEqual(target, [Float](repeating: -1, count: small.count))
    }

    func testTensorsInAnotherOrderAreRejected() throws {
        var tensors = Fixtures.wireTensors(small, Fixtures.randomSlab(small, seed: 2))
        tensors.swapAt(2, 3)
        let bytes = WireCodec.encode(.weights(Weights(step: 1, resetState: false, tensors: tensors)))
        let weights = try decodeWeights(bytes)
        var target = [Float](repeating: 0, count: small.count)
        XCTAssertThrowsWireError(.tensorNameMismatch(index: 2, received: "head.weight", expected: "rnn.bias_ih_l0")) {
            try target.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: small) }
        }
    }

    func testLayoutLimitsAcceptTheModelAndRejectALargerOne() throws {
        let larger = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 7, hiddenSize: 8, layerCount: 1))
        let limits = DecodeLimits(layout: small)
        XCTAssertNoThrow(try decodeWeights(encodeWeights(Fixtures.randomSlab(small, seed: 1), small), limits: limits))
        let bytes = encodeWeights(Fixtures.randomSlab(larger, seed: 1), larger)
        XCTAssertThrowsWireError(.tensorTooLarge(name: "rnn.weight_ih_l0", shape: [32, 7], limit: 112)) {
            try decodeWeights(bytes, limits: limits)
        }
        let tight = DecodeLimits(maxMessageBytes: small.count * 4 + 256, maxTensorElements: 1 << 20)
        XCTAssertThrowsWireError(.messageTooLarge(byteCount: bytes.count, limit: small.count * 4 + 256)) {
            try decodeWeights(bytes, limits: tight)
        }
    }
}
