import CWire
import Recurrent

/// A decoded Envelope body. Small messages are plain values; weights and gradient pushes keep
/// their tensors in the unpacked C message until the caller copies them into a slab.
public enum DecodedMessage: Sendable {
    case hello(Hello)
    case welcome(Welcome)
    case weights(DecodedWeights)
    case gradientPush(DecodedGradientPush)
    case heartbeat(Heartbeat)
    case shutdown(Shutdown)
    case error(WireErrorMessage)
    case shardSetup(ShardSetup)
    case shardCommand(ShardCommand)
    case shardReport(ShardReport)
    case reissue(Reissue)

    public var kind: MessageKind { message.kind }

    /// Everything as values, tensors copied into `[WireTensor]` (tests and tools).
    public var message: Message {
        switch self {
        case .hello(let hello): return .hello(hello)
        case .welcome(let welcome): return .welcome(welcome)
        case .weights(let weights): return .weights(weights.message)
        case .gradientPush(let push): return .gradientPush(push.message)
        case .heartbeat(let heartbeat): return .heartbeat(heartbeat)
        case .shutdown(let shutdown): return .shutdown(shutdown)
        case .error(let error): return .error(error)
        case .shardSetup(let setup): return .shardSetup(setup)
        case .shardCommand(let command): return .shardCommand(command)
        case .shardReport(let report): return .shardReport(report)
        case .reissue(let reissue): return .reissue(reissue)
        }
    }
}

/// Weights as received: scalars decoded, tensors still in the C message.
public struct DecodedWeights: Sendable {
    public let step: UInt64
    public let resetState: Bool
    public let tensors: DecodedTensorList
    /// From a shard: where its one "slab" tensor starts in the slab.
    public let offset: UInt64

    /// Checks the tensors against `layout` and copies them into `parameters` (memcpy per
    /// tensor). On error `parameters` is untouched.
    public func copyTensors(into parameters: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout) throws {
        try tensors.copy(into: parameters, layout: layout)
    }

    public var message: Weights {
        Weights(step: step, resetState: resetState, tensors: tensors.wireTensors(), offset: offset)
    }
}

/// A gradient push as received: scalars and (small) state decoded, gradient still in the C
/// message.
public struct DecodedGradientPush: Sendable {
    public let step: UInt64
    public let tokenCount: UInt64
    public let lossSum: Double
    public let computeSeconds: Double
    public let communicateSeconds: Double
    public let waitSeconds: Double
    public let part: UInt32
    public let parts: UInt32
    public let chunkBegin: UInt32
    public let chunkEnd: UInt32
    /// The chunks `chunkBegin ..< chunkEnd` as a range; nil when they do not make one (a
    /// peer's numbers: begin ≥ end is refused, never a trap).
    public var chunks: Range<Int>? { chunkBegin < chunkEnd ? Int(chunkBegin)..<Int(chunkEnd) : nil }
    /// To a shard: where its one "slab" tensor starts in the slab.
    public let offset: UInt64
    public let tensors: DecodedTensorList
    public let state: [WireTensor]

    /// Checks the gradient against `layout` and copies it into `gradient` (memcpy per tensor).
    /// On error `gradient` is untouched.
    public func copyTensors(into gradient: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout) throws {
        try tensors.copy(into: gradient, layout: layout)
    }

    /// For one part of a push: checks that the tensors are the run `slices` of the table and
    /// copies them to their places in `gradient`. On error `gradient` is untouched.
    public func copyTensors(into gradient: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout,
                            slices: Range<Int>) throws {
        try tensors.copy(into: gradient, layout: layout, slices: slices)
    }

    public var message: GradientPush {
        GradientPush(step: step, tokenCount: tokenCount, lossSum: lossSum, tensors: tensors.wireTensors(),
                     state: state, computeSeconds: computeSeconds, communicateSeconds: communicateSeconds,
                     waitSeconds: waitSeconds, part: part, parts: parts, chunkBegin: chunkBegin, chunkEnd: chunkEnd,
                     offset: offset)
    }
}

/// A `repeated Tensor` inside an unpacked envelope, each tensor already checked by the decoder
/// (positive shape within limits, product × 4 bytes). Keeps the envelope alive.
public struct DecodedTensorList: @unchecked Sendable {
    private let owner: UnpackedEnvelope
    public let count: Int
    private let tensors: UnsafeMutablePointer<UnsafeMutablePointer<Recur__Tensor>?>?
    /// Sum of the tensors' data bytes.
    public let byteCount: Int

    init(owner: UnpackedEnvelope, count: Int, tensors: UnsafeMutablePointer<UnsafeMutablePointer<Recur__Tensor>?>?,
         limits: DecodeLimits) throws {
        var byteCount = 0
        for index in 0..<count {
            let tensor = tensors![index]!.pointee  // protobuf-c allocates every element it counts
            try Self.validate(tensor, limits: limits)
            byteCount += tensor.data.len
        }
        self.owner = owner
        self.count = count
        self.tensors = tensors
        self.byteCount = byteCount
    }

    /// Shape dims > 0, product within limits (no overflow), data = product × 4 bytes.
    private static func validate(_ tensor: Recur__Tensor, limits: DecodeLimits) throws {
        let shape = Array(UnsafeBufferPointer(start: tensor.shape, count: tensor.n_shape))
        let name = String(cString: tensor.name)
        if shape.contains(0) { throw WireError.tensorShapeInvalid(name: name, shape: shape) }
        var elements = 1
        for dimension in shape {
            guard dimension <= UInt64(limits.maxTensorElements) else {
                throw WireError.tensorTooLarge(name: name, shape: shape, limit: limits.maxTensorElements)
            }
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(dimension))
            guard !overflow, product <= limits.maxTensorElements else {
                throw WireError.tensorTooLarge(name: name, shape: shape, limit: limits.maxTensorElements)
            }
            elements = product
        }
        guard tensor.data.len == elements * MemoryLayout<Float>.size else {
            throw WireError.tensorByteCountMismatch(name: name, shape: shape.map { Int($0) },
                                                    byteCount: tensor.data.len)
        }
    }

    private func tensor(_ index: Int) -> Recur__Tensor { tensors![index]!.pointee }

    private func shape(of tensor: Recur__Tensor) -> [Int] {
        UnsafeBufferPointer(start: tensor.shape, count: tensor.n_shape).map { Int($0) }
    }

    /// Tensor names in received order.
    public var names: [String] {
        withExtendedLifetime(owner) { (0..<count).map { String(cString: tensor($0).name) } }
    }

    /// Checks that the list is exactly `layout`'s table (count, then per tensor in order: name,
    /// shape, byte count), then calls `body` with each slice and a read-only view of the
    /// received floats, in layout order. Nothing is called if any tensor mismatches. The views
    /// are valid only inside `body`.
    public func forEachTensor(matching layout: ParameterLayout,
                              _ body: (ParameterSlice, UnsafeBufferPointer<Float>) throws -> Void) throws {
        try forEachTensor(matching: layout, slices: layout.slices.indices, body)
    }

    /// The same for a contiguous run `slices` of the table (one part of a push).
    public func forEachTensor(matching layout: ParameterLayout, slices: Range<Int>,
                              _ body: (ParameterSlice, UnsafeBufferPointer<Float>) throws -> Void) throws {
        let expected = Array(layout.slices[slices])
        try withExtendedLifetime(owner) {
            guard count == expected.count else {
                throw WireError.tensorCountMismatch(received: count, expected: expected.count)
            }
            for (index, slice) in expected.enumerated() {
                let received = tensor(index)
                let name = String(cString: received.name)
                guard name == slice.name else {
                    throw WireError.tensorNameMismatch(index: index, received: name, expected: slice.name)
                }
                let receivedShape = shape(of: received)
                guard receivedShape == slice.shape else {
                    throw WireError.tensorShapeMismatch(name: name, received: receivedShape, expected: slice.shape)
                }
                guard received.data.len == slice.count * MemoryLayout<Float>.size else {
                    throw WireError.tensorByteCountMismatch(name: name, shape: slice.shape, byteCount: received.data.len)
                }
            }
            for (index, slice) in expected.enumerated() {
                let data = tensor(index).data
                // protobuf-c mallocs each bytes field: aligned for Float.
                let raw = UnsafeRawPointer(data.data!)
                precondition(Int(bitPattern: raw) % MemoryLayout<Float>.alignment == 0)
                try body(slice, UnsafeBufferPointer(start: raw.assumingMemoryBound(to: Float.self), count: slice.count))
            }
        }
    }

    /// Checks against `layout` (see `forEachTensor`) and copies every tensor to its slice of
    /// `values` with one memcpy each. On error `values` is untouched.
    public func copy(into values: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout) throws {
        try copy(into: values, layout: layout, slices: layout.slices.indices)
    }

    /// The same for a contiguous run `slices` of the table.
    public func copy(into values: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout, slices: Range<Int>) throws {
        precondition(values.count == layout.count, "slab holds \(values.count) values, layout \(layout.count)")
        let base = values.baseAddress!
        try forEachTensor(matching: layout, slices: slices) { slice, received in
            UnsafeMutableRawPointer(base + slice.offset)
                .copyMemory(from: received.baseAddress!, byteCount: slice.count * MemoryLayout<Float>.size)
        }
    }

    /// A shard's range: checks that the list is one tensor "slab" of shape [values.count] and
    /// copies it into `values` (one memcpy). On error `values` is untouched.
    public func copySlab(into values: UnsafeMutableBufferPointer<Float>) throws {
        try withExtendedLifetime(owner) {
            guard count == 1 else { throw WireError.tensorCountMismatch(received: count, expected: 1) }
            let received = tensor(0)
            let name = String(cString: received.name)
            guard name == "slab" else { throw WireError.tensorNameMismatch(index: 0, received: name, expected: "slab") }
            guard shape(of: received) == [values.count] else {
                throw WireError.tensorShapeMismatch(name: name, received: shape(of: received), expected: [values.count])
            }
            if values.count > 0 {
                UnsafeMutableRawPointer(values.baseAddress!).copyMemory(from: received.data.data!, byteCount: received.data.len)
            }
        }
    }

    /// Copies of every tensor as values (state, tests, tools; not the per-step path).
    public func wireTensors() -> [WireTensor] {
        withExtendedLifetime(owner) {
            (0..<count).map { index in
                let received = tensor(index)
                let elements = received.data.len / MemoryLayout<Float>.size
                let values = [Float](unsafeUninitializedCapacity: elements) { buffer, initialized in
                    if elements > 0 {
                        UnsafeMutableRawPointer(buffer.baseAddress!)
                            .copyMemory(from: received.data.data!, byteCount: received.data.len)
                    }
                    initialized = elements
                }
                return WireTensor(name: String(cString: received.name), shape: shape(of: received), values: values)
            }
        }
    }
}
