/// Inverted dropout (PyTorch's `nn.Dropout` in training mode) on the output h of every layer
/// where the next consumer reads it: the layer above (PyTorch's `nn.LSTM(dropout=p)`) and, for
/// the top layer, the head (char-rnn). The recurrent path inside a layer is never dropped. A
/// kept unit is scaled by 1/(1−p), so evaluation and sampling simply run without dropout.
///
/// Masks come from a counter-based generator: unit j of layer l at time t of global stream b in
/// global step s is kept iff `uniform(seed, s, b, l, t, j) ≥ p`. No state is carried, so a
/// stream gets the same mask whatever thread, worker or resumed process computes it, and
/// every split of the work and every resume give the same bits.
public struct Dropout: Equatable, Sendable {
    /// p, the probability of dropping a unit, in (0, 1).
    public var probability: Double
    public var seed: UInt64

    public init(probability: Double, seed: UInt64) {
        precondition(probability > 0 && probability < 1, "dropout probability must be in (0, 1)")
        self.probability = probability
        self.seed = seed
    }

    /// 1/(1−p), the factor of a kept unit.
    public var scale: Double { 1 / (1 - probability) }

    /// Where a workspace's streams sit in the run: the global step and the global index of
    /// its stream 0.
    public struct Position: Equatable, Sendable {
        public var step: Int
        public var firstStream: Int

        public init(step: Int, firstStream: Int) {
            self.step = step
            self.firstStream = firstStream
        }
    }

    /// Writes the mask of (step, stream, layer, time) for H units: 0 for a dropped unit,
    /// `scale` for a kept one.
    @inline(__always)
    public func fill<S: BinaryFloatingPoint>(_ mask: UnsafeMutablePointer<S>, count H: Int, step: Int, stream: Int, layer: Int, time: Int) {
        let keepScale = S(scale)
        var key = Self.mix(seed ^ 0x9E37_79B9_7F4A_7C15)
        key = Self.mix(key ^ UInt64(truncatingIfNeeded: step))
        key = Self.mix(key ^ UInt64(truncatingIfNeeded: stream))
        key = Self.mix(key ^ (UInt64(truncatingIfNeeded: layer) << 32 | UInt64(truncatingIfNeeded: time)))
        for j in 0..<H {
            mask[j] = Self.uniform(key, j) >= probability ? keepScale : 0
        }
    }

    /// A uniform double in [0, 1) from (key, j): 53 bits of the splitmix64 finalizer.
    @inline(__always)
    static func uniform(_ key: UInt64, _ j: Int) -> Double {
        Double(mix(key &+ UInt64(truncatingIfNeeded: j) &* 0xBF58_476D_1CE4_E5B9) >> 11) * 0x1p-53
    }

    /// splitmix64's output function: a bijection of UInt64 with good avalanche.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
