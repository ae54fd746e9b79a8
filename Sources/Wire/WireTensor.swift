/// A small named tensor held by value: hidden state in `Welcome` and `GradientPush`, and any
/// tensor in tests and tools. Weights and gradients (megabytes every step) go through the slab
/// paths of `WireCodec` and `DecodedTensorList` instead, without a `[Float]` per message.
public struct WireTensor: Equatable, Sendable, CustomStringConvertible {
    public var name: String
    /// Row-major; product(shape) == values.count.
    public var shape: [Int]
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 > 0 }, "tensor \(name): dimensions must be positive")
        precondition(shape.reduce(1, *) == values.count,
                     "tensor \(name): shape \(shape) does not hold \(values.count) values")
        self.name = name
        self.shape = shape
        self.values = values
    }

    /// Name, shape and size; never the values (logs stay short).
    public var description: String {
        "\(name) \(shapeText(shape)) (\(byteText(values.count * MemoryLayout<Float>.size)))"
    }
}
