/// The shape of a character-level recurrent language model: one-hot input over V symbols,
/// L stacked recurrent layers of H units, a linear head back to V logits.
///
/// Dimension letters used across the math files: N streams, T window, V vocabulary,
/// H hidden, L layers, G gate blocks per layer (RNN 1, GRU 3, LSTM 4).
public enum CellType: String, Codable, CaseIterable, Sendable {
    case rnn, lstm, gru

    /// Gate blocks stacked in one fused weight (PyTorch order: LSTM i f g o; GRU r z n).
    public var gateCount: Int {
        switch self {
        case .rnn: return 1
        case .lstm: return 4
        case .gru: return 3
        }
    }

    /// GRU keeps separate input and recurrent biases (the recurrent one sits inside r*(...));
    /// RNN and LSTM have one bias per gate, as Keras counts them.
    public var hasRecurrentBias: Bool { self == .gru }

    /// LSTM carries a cell state c beside h.
    public var hasCellState: Bool { self == .lstm }
}

public struct ModelConfig: Codable, Equatable, Hashable, Sendable {
    public var cell: CellType
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layerCount: Int

    public init(cell: CellType, vocabularySize: Int, hiddenSize: Int, layerCount: Int) {
        precondition(vocabularySize > 0 && hiddenSize > 0 && layerCount > 0)
        self.cell = cell
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
    }

    /// Input width of layer l: V for the first layer (one-hot), H above it.
    public func inputSize(layer: Int) -> Int { layer == 0 ? vocabularySize : hiddenSize }

    /// Weights that take part in matrix products per token (biases excluded; the one-hot
    /// input product counted densely, as PyTorch computes it). 6 FLOP each per trained token.
    public var matmulWeightCount: Int {
        let G = cell.gateCount, H = hiddenSize
        var n = hiddenSize * vocabularySize
        for l in 0..<layerCount { n += G * H * inputSize(layer: l) + G * H * H }
        return n
    }
}
