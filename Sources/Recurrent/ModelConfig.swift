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

/// How a classifier reads its top layer into the one feature vector of a sequence (D·H wide).
public enum Pooling: String, Codable, CaseIterable, Sendable {
    /// The final h: forward after the last position, reverse after position 0 (PyTorch's
    /// `h_n[-2:]`, Keras's `return_sequences=False`).
    case last
    /// The mean of the top layer's outputs over the sequence's positions (Keras's
    /// `return_sequences=True` + `GlobalAveragePooling1D`).
    case mean
}

///
/// A classifier (`labelCount` set) has the same stacked layers, read once per sequence: its
/// head maps the top layer's final h (forward and reverse concatenated when `bidirectional`),
/// or with `pooling` .mean the mean of its outputs over the positions, to `labelCount` logits. Bidirectional layers run a second, reverse
/// direction with its own weights; the layer above reads both directions' h (2H wide).
public struct ModelConfig: Equatable, Hashable, Sendable {
    public var cell: CellType
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    /// Each layer also reads the sequence backwards (PyTorch `bidirectional=True`).
    public var bidirectional: Bool
    /// The classes of a classifier; nil for a language model (whose head has V outputs).
    public var labelCount: Int?
    /// What a classifier's head reads (`Pooling`); .last for a language model.
    public var pooling: Pooling

    public init(cell: CellType, vocabularySize: Int, hiddenSize: Int, layerCount: Int,
                bidirectional: Bool = false, labelCount: Int? = nil, pooling: Pooling = .last) {
        precondition(vocabularySize > 0 && hiddenSize > 0 && layerCount > 0 && (labelCount ?? 1) > 0)
        self.cell = cell
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.bidirectional = bidirectional
        self.labelCount = labelCount
        self.pooling = pooling
    }

    /// 2 for bidirectional layers, else 1.
    public var directions: Int { bidirectional ? 2 : 1 }

    /// Rows of the head: the label count of a classifier, V for a language model.
    public var outputCount: Int { labelCount ?? vocabularySize }

    /// Width of what the layer above (or the head) reads from a layer: H per direction.
    public var layerOutputSize: Int { hiddenSize * directions }

    /// Input width of layer l: V for the first layer (one-hot), H (2H bidirectional) above it.
    public func inputSize(layer: Int) -> Int { layer == 0 ? vocabularySize : layerOutputSize }

    /// Weights that take part in matrix products per token (biases excluded; the one-hot
    /// input product counted densely, as PyTorch computes it). 6 FLOP each per trained token.
    /// A classifier's head runs once per sequence, not per token, and is not counted.
    public var matmulWeightCount: Int {
        let G = cell.gateCount, H = hiddenSize
        var n = labelCount == nil ? layerOutputSize * outputCount : 0
        for l in 0..<layerCount { n += directions * (G * H * inputSize(layer: l) + G * H * H) }
        return n
    }
}
