import Recurrent

/// The tests' one seeded generator (SplitMix64's increment and shifts; its second multiplier
/// differs from the published one, and stays so that existing fixtures keep their values),
/// independent of the project's own RNG so that a change there cannot change the oracle's inputs.
public struct FixtureRandom: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    public mutating func uniform(_ scale: Double) -> Double {
        (Double(next() >> 11) / Double(1 << 53) * 2 - 1) * scale
    }

    public mutating func index(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// A small model problem: parameters, token windows and initial state, all in Double.
public struct CellProblem {
    public let config: ModelConfig
    public private(set) var streams: Int
    public let window: Int
    public var parameters: [Double]
    public var inputs: [[Int]]      // [stream][t]
    public var targets: [[Int]]
    public var h0: [Double]         // (L, N, H)
    public var c0: [Double]         // (L, N, H), LSTM only (else zeros)

    public init(config: ModelConfig, streams: Int, window: Int, seed: UInt64, scale: Double = 0.5) {
        var rng = FixtureRandom(seed: seed)
        self.config = config
        self.streams = streams
        self.window = window
        let layout = ParameterLayout(config)
        parameters = (0..<layout.count).map { _ in rng.uniform(scale) }
        let V = config.vocabularySize
        inputs = (0..<streams).map { _ in (0..<window).map { _ in rng.index(V) } }
        targets = (0..<streams).map { _ in (0..<window).map { _ in rng.index(V) } }
        let stateCount = config.layerCount * streams * config.hiddenSize
        h0 = (0..<stateCount).map { _ in rng.uniform(0.5) }
        c0 = (0..<stateCount).map { _ in config.cell == .lstm ? rng.uniform(0.5) : 0 }
    }

    /// The problem of the streams in `range` alone: their inputs, targets and initial state.
    public func subset(streams range: Range<Int>) -> CellProblem {
        var piece = self
        let N = streams, H = config.hiddenSize
        piece.streams = range.count
        piece.inputs = Array(inputs[range])
        piece.targets = Array(targets[range])
        func rows(_ flat: [Double]) -> [Double] {
            (0..<config.layerCount).flatMap { l in flat[(l * N + range.lowerBound) * H..<(l * N + range.upperBound) * H] }
        }
        piece.h0 = rows(h0)
        piece.c0 = rows(c0)
        return piece
    }

    /// Initial state as [layer][stream][unit] for the naive reference.
    public func nested(_ flat: [Double]) -> [[[Double]]] {
        let N = streams, H = config.hiddenSize
        return (0..<config.layerCount).map { l in
            (0..<N).map { s in Array(flat[(l * N + s) * H..<(l * N + s + 1) * H]) }
        }
    }
}
