import Recurrent

/// The hidden state every stream carries from one step to the next (truncated BPTT): h, and
/// c for LSTM, each (L, N, H) for N streams. The training loop owns the run's one copy; a
/// worker owns the copy of its block of streams. Every conversion of carried state (to a
/// checkpoint, to a block of streams, to the wire) goes through this type.
public final class CarriedState {
    public let model: ModelConfig
    /// The state as the math core reads and writes it.
    public let recurrent: RecurrentState<Float>

    public init(model: ModelConfig, streams: Int) {
        self.model = model
        recurrent = RecurrentState(config: model, streams: streams)
    }

    public var streamCount: Int { recurrent.streamCount }
    /// "h", and "c" for LSTM: the names of the state tensors in checkpoints and on the wire.
    public var tensorNames: [String] { model.cell.hasCellState ? ["h", "c"] : ["h"] }
    /// (L, n, H): the shape of the state of n streams.
    public func shape(streams n: Int) -> [Int] { [model.layerCount, n, model.hiddenSize] }

    public func reset() { recurrent.reset() }

    public func copy(from other: CarriedState) {
        precondition(other.streamCount == streamCount)
        recurrent.h.update(from: other.recurrent.h, count: recurrent.count)
        if let c = recurrent.c { c.update(from: other.recurrent.c!, count: recurrent.count) }
    }

    private func base(_ name: String) -> UnsafeMutablePointer<Float> {
        switch name {
        case "h": return recurrent.h
        case "c" where recurrent.c != nil: return recurrent.c!
        default: preconditionFailure("no state tensor \(name)")
        }
    }

    /// The whole tensor `name` (L, N, H) as values (checkpoints).
    public func values(_ name: String) -> [Float] {
        Array(UnsafeBufferPointer(start: base(name), count: recurrent.count))
    }

    /// Sets the whole tensor `name` from (L, N, H) values (resume).
    public func setValues(_ name: String, _ values: [Float]) {
        precondition(values.count == recurrent.count)
        base(name).update(from: values, count: values.count)
    }

    /// The rows of `streams` of tensor `name`, as (L, n, H) values.
    public func block(_ name: String, streams: Range<Int>) -> [Float] {
        let H = model.hiddenSize, N = streamCount, n = streams.count
        let source = base(name)
        var values: [Float] = []
        values.reserveCapacity(model.layerCount * n * H)
        for l in 0..<model.layerCount {
            values += UnsafeBufferPointer(start: source + (l * N + streams.lowerBound) * H, count: n * H)
        }
        return values
    }

    /// Writes (L, n, H) values into the rows of `streams` of tensor `name`.
    public func setBlock(_ name: String, streams: Range<Int>, from values: UnsafeBufferPointer<Float>) {
        let H = model.hiddenSize, N = streamCount, n = streams.count
        precondition(values.count == model.layerCount * n * H)
        let target = base(name)
        for l in 0..<model.layerCount {
            (target + (l * N + streams.lowerBound) * H).update(from: values.baseAddress! + l * n * H, count: n * H)
        }
    }

    /// True when every value is finite (a NaN state must never be saved as good).
    public var isFinite: Bool {
        tensorNames.allSatisfy { name in
            UnsafeBufferPointer(start: base(name), count: recurrent.count).allSatisfy(\.isFinite)
        }
    }
}
