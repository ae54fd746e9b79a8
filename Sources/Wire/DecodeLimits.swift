import Recurrent

/// Bounds a receiver puts on a peer's bytes before trusting them.
public struct DecodeLimits: Equatable, Sendable {
    /// Larger messages are rejected before parsing.
    public var maxMessageBytes: Int
    /// Largest element count of one tensor (product of its shape).
    public var maxTensorElements: Int

    public init(maxMessageBytes: Int, maxTensorElements: Int) {
        precondition(maxMessageBytes > 0 && maxTensorElements > 0)
        self.maxMessageBytes = maxMessageBytes
        self.maxTensorElements = maxTensorElements
    }

    /// 1 GiB per message, 2^28 elements (1 GiB of float32) per tensor: a sanity bound for
    /// tools that do not know the model.
    public static let standard = DecodeLimits(maxMessageBytes: 1 << 30, maxTensorElements: 1 << 28)

    /// Room for one copy of `layout`'s tensors plus `extraValues` more floats (carried state),
    /// with 64 KiB for strings and framing. Nothing a correct peer sends is larger.
    public init(layout: ParameterLayout, extraValues: Int = 0) {
        precondition(extraValues >= 0)
        let largestSlice = layout.slices.map(\.count).max() ?? 1
        self.init(maxMessageBytes: (layout.count + extraValues) * MemoryLayout<Float>.size + (1 << 16),
                  maxTensorElements: max(largestSlice, extraValues, 1))
    }
}
