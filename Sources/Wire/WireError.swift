/// Everything a peer's bytes can do wrong. The coordinator logs the description, drops the
/// message and keeps running; one line each, with the context needed to find the sender's bug.
public enum WireError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A ZeroMQ frame with no bytes.
    case emptyMessage
    /// Larger than `DecodeLimits.maxMessageBytes`; rejected before parsing.
    case messageTooLarge(byteCount: Int, limit: Int)
    /// protobuf-c could not parse the bytes as an Envelope.
    case malformed(byteCount: Int)
    /// The envelope's version is not `WireCodec.protocolVersion`.
    case versionMismatch(received: UInt32, expected: UInt32)
    /// No body, or a body type this version does not know.
    case missingBody
    /// A string field (`Message.field`) with a NUL byte: C strings would cut it there, so a
    /// name like "rnn.weight_ih_l0\0x" could pass for another.
    case nulInString(field: String)
    /// A tensor with a zero dimension.
    case tensorShapeInvalid(name: String, shape: [UInt64])
    /// A tensor whose element count exceeds `DecodeLimits.maxTensorElements` (or overflows).
    case tensorTooLarge(name: String, shape: [UInt64], limit: Int)
    /// A tensor whose data is not product(shape) float32 values.
    case tensorByteCountMismatch(name: String, shape: [Int], byteCount: Int)
    /// A tensor list whose length differs from the parameter table's.
    case tensorCountMismatch(received: Int, expected: Int)
    /// The tensor at `index` is not the one the parameter table lists there.
    case tensorNameMismatch(index: Int, received: String, expected: String)
    /// A tensor with the expected name and another shape.
    case tensorShapeMismatch(name: String, received: [Int], expected: [Int])
    /// A push for another step than the one being gathered (stale or future).
    case unexpectedStep(kind: MessageKind, received: UInt64, expected: UInt64)
    /// A worker whose corpus, vocabulary or model differs from the coordinator's; one entry per
    /// differing field, e.g. `corpus_digest 1f2e3d4c… (coordinator 9a8b7c6d…)`.
    case fingerprintMismatch(differences: [String])
    /// A required message field is unset (`message.field`).
    case missingField(String)
    /// An enumeration field (`message.field`) with a value this version does not know.
    case unknownKind(field: String, value: UInt32)

    public var description: String {
        switch self {
        case .emptyMessage:
            return "empty message (0 bytes)"
        case .messageTooLarge(let byteCount, let limit):
            return "message of \(byteCount) bytes exceeds the limit of \(limit) bytes"
        case .malformed(let byteCount):
            return "truncated or malformed message (\(byteCount) bytes)"
        case .versionMismatch(let received, let expected):
            return "protocol version \(received), expected \(expected)"
        case .missingBody:
            return "message has no body (missing or unknown message type)"
        case .missingField(let field):
            return "field \(field) is missing"
        case .unknownKind(let field, let value):
            return "field \(field) has unknown value \(value)"
        case .nulInString(let field):
            return "string field \(field) contains a NUL byte"
        case .tensorShapeInvalid(let name, let shape):
            return "tensor \(name): shape \(shapeText(shape)) has a zero dimension"
        case .tensorTooLarge(let name, let shape, let limit):
            return "tensor \(name): shape \(shapeText(shape)) has more than \(limit) elements"
        case .tensorByteCountMismatch(let name, let shape, let byteCount):
            let needed = shape.reduce(1, *) * MemoryLayout<Float>.size
            return "tensor \(name): shape \(shapeText(shape)) needs \(needed) bytes, got \(byteCount)"
        case .tensorCountMismatch(let received, let expected):
            return "\(received) tensors, expected \(expected)"
        case .tensorNameMismatch(let index, let received, let expected):
            return "tensor \(index) is \(received), expected \(expected)"
        case .tensorShapeMismatch(let name, let received, let expected):
            return "tensor \(name): shape \(shapeText(received)), expected \(shapeText(expected))"
        case .unexpectedStep(let kind, let received, let expected):
            return "\(kind.noun) for step \(received), expected step \(expected)"
        case .fingerprintMismatch(let differences):
            return "worker fingerprint differs: " + differences.joined(separator: "; ")
        }
    }
}

/// A shape as `[4,3]`: no spaces, so a log line keeps it as one word.
func shapeText<T: BinaryInteger>(_ shape: [T]) -> String {
    "[" + shape.map { "\($0)" }.joined(separator: ",") + "]"
}
