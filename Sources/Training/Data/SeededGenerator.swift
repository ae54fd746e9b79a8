/// A seeded, platform-independent random number generator: xoshiro256** (Blackman & Vigna)
/// with its 256-bit state filled by SplitMix64 from a 64-bit seed, as the authors recommend.
///
/// Everything that must replay exactly (weight initialisation, the built-in corpus, sampling,
/// resumed runs) draws from this generator, never from `SystemRandomNumberGenerator`. The
/// helpers below (`nextInt(below:)`, `nextDouble()`, ...) are defined here bit for bit, unlike
/// the standard library's `Int.random(in:using:)`, whose mapping may change between versions.
///
/// `state` is the whole generator: save it (it is `Codable`) and `init(state:)` continues the
/// same sequence.
public struct SeededGenerator: RandomNumberGenerator, Codable, Equatable, Hashable, Sendable {
    private var s0, s1, s2, s3: UInt64

    /// The four xoshiro256** words; never all zero.
    public var state: [UInt64] { [s0, s1, s2, s3] }

    /// Fills the state with four SplitMix64 outputs of `seed`. Any seed is valid, 0 included.
    public init(seed: UInt64) {
        var splitMix = seed
        s0 = Self.splitMix64(&splitMix)
        s1 = Self.splitMix64(&splitMix)
        s2 = Self.splitMix64(&splitMix)
        s3 = Self.splitMix64(&splitMix)
    }

    /// Restores a generator from a saved `state`.
    public init(state: [UInt64]) throws {
        guard state.count == 4 else { throw SeededGeneratorError.wrongWordCount(state.count) }
        guard state.contains(where: { $0 != 0 }) else { throw SeededGeneratorError.allZero }
        (s0, s1, s2, s3) = (state[0], state[1], state[2], state[3])
    }

    public init(from decoder: Decoder) throws {
        let words = try decoder.singleValueContainer().decode([UInt64].self)
        do {
            try self.init(state: words)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "\(error)"))
        }
    }

    /// Encodes as the bare array of four state words.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(state)
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    /// Uniform in [0, 1) on the grid of 2^-24: the top 24 bits of `next()`.
    public mutating func nextUniformFloat() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// Uniform in [range.lowerBound, range.upperBound]: `lower + (upper - lower) * nextUniformFloat()`,
    /// capped at `upper` in case rounding of the span overshoots.
    public mutating func nextUniform(in range: ClosedRange<Float>) -> Float {
        min(range.lowerBound + (range.upperBound - range.lowerBound) * nextUniformFloat(), range.upperBound)
    }

    /// Uniform in [0, 1) on the grid of 2^-53: the top 53 bits of `next()`.
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform integer in 0 ..< bound, unbiased (Lemire's multiply-shift with rejection).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "nextInt(below:) needs a positive bound, got \(bound)")
        let n = UInt64(bound)
        var product = next().multipliedFullWidth(by: n)
        if product.low < n {
            let threshold = (0 &- n) % n
            while product.low < threshold { product = next().multipliedFullWidth(by: n) }
        }
        return Int(product.high)
    }

    /// One SplitMix64 step: advances `x` by the golden gamma and returns the mixed value.
    public static func splitMix64(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9e3779b97f4a7c15
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        return z ^ (z >> 31)
    }

    @inline(__always) private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}

/// A saved generator state that cannot be restored.
public enum SeededGeneratorError: Error, CustomStringConvertible, Equatable {
    case wrongWordCount(Int)
    case allZero

    public var description: String {
        switch self {
        case .wrongWordCount(let count):
            return "random generator state must have 4 words, got \(count)"
        case .allZero:
            return "random generator state is all zero, which xoshiro256** never reaches"
        }
    }
}
