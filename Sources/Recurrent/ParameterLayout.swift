/// What a tensor of the table is, independent of its PyTorch name.
public enum ParameterRole: Equatable, Sendable {
    case inputWeight, recurrentWeight, inputBias, recurrentBias   // of a recurrent layer
    case headWeight, headBias
}

/// One named tensor of a flat slab: `count` values from `offset`, row-major `shape`.
public struct ParameterSlice: Equatable, Sendable {
    /// PyTorch's state_dict name; only checkpoint and PyTorch I/O use it.
    public let name: String
    public let shape: [Int]
    public let offset: Int
    /// The recurrent layer the tensor belongs to; nil for the head.
    public let layer: Int?
    /// 0 forward, 1 the reverse direction of a bidirectional layer (`_reverse` names); 0 for the head.
    public let direction: Int
    public let role: ParameterRole
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
///   …_reverse           the same four for the reverse direction of a bidirectional layer,
///                       after the forward ones (D_l = 2H above layer 0)
///   head.weight         (O, H·directions)   O = V, or the label count of a classifier
///   head.bias           (O)
public struct ParameterLayout: Equatable, Sendable {
    public let config: ModelConfig
    public let slices: [ParameterSlice]
    /// Total number of scalars in the slab.
    public let count: Int

    public init(_ config: ModelConfig) {
        let G = config.cell.gateCount, H = config.hiddenSize, O = config.outputCount
        var table: [(String, [Int], Int?, Int, ParameterRole)] = []
        for l in 0..<config.layerCount {
            for direction in 0..<config.directions {
                let suffix = direction == 0 ? "" : "_reverse"
                table.append(("rnn.weight_ih_l\(l)\(suffix)", [G * H, config.inputSize(layer: l)], l, direction, .inputWeight))
                table.append(("rnn.weight_hh_l\(l)\(suffix)", [G * H, H], l, direction, .recurrentWeight))
                table.append(("rnn.bias_ih_l\(l)\(suffix)", [G * H], l, direction, .inputBias))
                if config.cell.hasRecurrentBias {
                    table.append(("rnn.bias_hh_l\(l)\(suffix)", [G * H], l, direction, .recurrentBias))
                }
            }
        }
        table.append(("head.weight", [O, config.layerOutputSize], nil, 0, .headWeight))
        table.append(("head.bias", [O], nil, 0, .headBias))

        var offset = 0
        var slices: [ParameterSlice] = []
        for (name, shape, layer, direction, role) in table {
            let slice = ParameterSlice(name: name, shape: shape, offset: offset, layer: layer, direction: direction, role: role)
            slices.append(slice)
            offset += slice.count
        }
        self.config = config
        self.slices = slices
        self.count = offset
    }

    public func slice(named name: String) -> ParameterSlice? { slices.first { $0.name == name } }

    /// Indices of the tensors of recurrent layer `layer`, both directions (contiguous in the table).
    public func slices(ofLayer layer: Int) -> Range<Int> {
        let first = slices.firstIndex { $0.layer == layer }!
        let end = slices[first...].firstIndex { $0.layer != layer }!
        return first..<end
    }

    /// Indices of the head's tensors (the end of the table).
    public var headSlices: Range<Int> { slices.firstIndex { $0.layer == nil }!..<slices.count }

    /// The scalars of a contiguous run of tensors.
    public func elements(of run: Range<Int>) -> Range<Int> {
        slices[run.lowerBound].offset..<slices[run.upperBound - 1].range.upperBound
    }

    /// The tensor of `role` in `layer` (nil for the head) and `direction`, if the model has one.
    public func slice(_ role: ParameterRole, layer: Int? = nil, direction: Int = 0) -> ParameterSlice? {
        slices.first { $0.role == role && $0.layer == layer && $0.direction == direction }
    }
}
