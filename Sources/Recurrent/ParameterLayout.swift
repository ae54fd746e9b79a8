/// One named tensor of a flat slab: `count` values from `offset`, row-major `shape`.
public struct ParameterSlice: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The one `(name, shape)` table of a model. Parameters, gradients and optimizer state are
/// flat buffers with this layout; checkpoints and wire messages list tensors in this order.
///
/// Names follow PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict under `rnn.` plus `head.`:
///   rnn.weight_ih_l{l}  (G·H, D_l)      D_0 = V, D_l = H above
///   rnn.weight_hh_l{l}  (G·H, H)
///   rnn.bias_ih_l{l}    (G·H)
///   rnn.bias_hh_l{l}    (G·H)           GRU only; RNN/LSTM keep one bias (see CellType)
///   head.weight         (V, H)
///   head.bias           (V)
public struct ParameterLayout: Equatable, Sendable {
    public let config: ModelConfig
    public let slices: [ParameterSlice]
    /// Total number of scalars in the slab.
    public let count: Int

    public init(_ config: ModelConfig) {
        let G = config.cell.gateCount, H = config.hiddenSize, V = config.vocabularySize
        var table: [(String, [Int])] = []
        for l in 0..<config.layerCount {
            table.append(("rnn.weight_ih_l\(l)", [G * H, config.inputSize(layer: l)]))
            table.append(("rnn.weight_hh_l\(l)", [G * H, H]))
            table.append(("rnn.bias_ih_l\(l)", [G * H]))
            if config.cell.hasRecurrentBias { table.append(("rnn.bias_hh_l\(l)", [G * H])) }
        }
        table.append(("head.weight", [V, H]))
        table.append(("head.bias", [V]))

        var offset = 0
        var slices: [ParameterSlice] = []
        for (name, shape) in table {
            let slice = ParameterSlice(name: name, shape: shape, offset: offset)
            slices.append(slice)
            offset += slice.count
        }
        self.config = config
        self.slices = slices
        self.count = offset
    }

    public func slice(named name: String) -> ParameterSlice? { slices.first { $0.name == name } }

    /// Offset of a slice that the layout always has (programmer error otherwise).
    public func offset(of name: String) -> Int {
        guard let s = slice(named: name) else { preconditionFailure("no parameter \(name)") }
        return s.offset
    }
}
