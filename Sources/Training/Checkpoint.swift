import Foundation
import Recurrent

/// A checkpoint directory (docs/DESIGN.md, "Checkpoint directory"), written atomically:
///
///   model.safetensors      weights under PyTorch's nn.RNN/LSTM/GRU names (`rnn.*`) and
///                          `head.*`; `__metadata__` = {"config": model JSON, "vocabulary":
///                          JSON array of one-scalar strings}. RNN/LSTM write their single
///                          bias as bias_ih and zeros as bias_hh; reading sums the two.
///   optimizer.safetensors  optimizer state, one tensor per (state buffer, parameter):
///                          `exp_avg.rnn.weight_ih_l0`, …; metadata: optimizer JSON, step count
///   hidden.safetensors     carried state `h` (and `c`), shape (L, N, H)
///   state.json             step, training config, corpus digest, RNG state
///
/// Only model.safetensors is needed to evaluate or sample, so a file written by PyTorch's
/// `safetensors.torch.save_file` with that metadata loads too.
public struct Checkpoint {
    public var model: ModelConfig
    public var vocabulary: Vocabulary
    public var parameters: [Float]
    /// A classifier's class names (`model.labelCount` of them, metadata "labels"); empty for
    /// a language model.
    public var labels: [String]
    /// Present in checkpoints written by training (absent for a bare model file).
    public var training: TrainingState?

    public struct TrainingState {
        public var config: TrainingConfig
        /// Steps completed: the next step to run.
        public var step: Int
        public var corpusDigest: String
        public var randomState: [UInt64]
        public var optimizerStepCount: Int
        public var optimizerBuffers: [(name: String, values: [Float])]
        public var hiddenH: [Float]     // (L, N, H)
        public var hiddenC: [Float]     // (L, N, H) LSTM, else empty
        /// The corpus file the run trained on (absolute), nil for the built-in corpus: what
        /// `--resume` reads when no --data is given.
        public var corpusPath: String?
        /// The run's `--log-jsonl` file (absolute), nil without one: where `--resume` goes on
        /// appending when no --log-jsonl is given.
        public var logPath: String?

        public init(config: TrainingConfig, step: Int, corpusDigest: String, randomState: [UInt64],
                    optimizerStepCount: Int, optimizerBuffers: [(name: String, values: [Float])],
                    hiddenH: [Float], hiddenC: [Float], corpusPath: String? = nil, logPath: String? = nil) {
            self.corpusPath = corpusPath
            self.logPath = logPath
            self.config = config
            self.step = step
            self.corpusDigest = corpusDigest
            self.randomState = randomState
            self.optimizerStepCount = optimizerStepCount
            self.optimizerBuffers = optimizerBuffers
            self.hiddenH = hiddenH
            self.hiddenC = hiddenC
        }
    }

    public init(model: ModelConfig, vocabulary: Vocabulary, parameters: [Float], labels: [String] = [], training: TrainingState? = nil) {
        self.model = model
        self.vocabulary = vocabulary
        self.labels = labels
        self.parameters = parameters
        self.training = training
    }

    static let modelFile = "model.safetensors", optimizerFile = "optimizer.safetensors"
    static let hiddenFile = "hidden.safetensors", stateFile = "state.json"

    /// The largest safetensors file read (16 GiB: 4 G float32 values, beyond any model this
    /// trainer runs) and the largest state.json (1 MiB); larger files are refused before reading.
    public static let maximumTensorFileBytes = 16 << 30
    public static let maximumStateFileBytes = 1 << 20

    // MARK: Write

    /// Writes the checkpoint atomically over `directory`. Before anything is written every
    /// tensor is checked (shapes against the model and config, every value finite: a diverged
    /// run must not replace the last good checkpoint), and before the new directory replaces
    /// the old one it is read back and compared bit for bit. Throws `CheckpointError` then,
    /// leaving the previous checkpoint in place. Afterwards the leftovers of earlier writers
    /// that died are removed; returns one line per removal, for the log.
    @discardableResult
    public func write(to directory: URL) throws -> [String] {
        let path = directory.standardizedFileURL.path
        try checkConsistent(path: path)
        var files = [Self.modelFile: try modelFileBytes()]
        if let t = training {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            files[Self.optimizerFile] = Safetensors.encode(tensors: optimizerTensors(t), metadata: [
                "optimizer": String(decoding: try encoder.encode(t.config.optimizer), as: UTF8.self),
                "step_count": String(t.optimizerStepCount),
                "buffers": t.optimizerBuffers.map(\.name).joined(separator: ","),
            ])
            files[Self.hiddenFile] = Safetensors.encode(tensors: hiddenTensors(t))
            files[Self.stateFile] = try stateFileBytes()
        }
        try AtomicDirectory.write(files, to: directory) { written in
            try self.checkReadBack(try Checkpoint.read(from: written, recovering: false), path: path)
        }
        return (try? Self.recover(directory)) ?? []
    }

    /// Model tensors in layout order, plus zero `bias_hh` for RNN/LSTM (PyTorch has both).
    func modelTensors() -> [SafetensorsTensor] {
        let layout = ParameterLayout(model)
        var tensors: [SafetensorsTensor] = []
        for slice in layout.slices {
            tensors.append(SafetensorsTensor(name: slice.name, shape: slice.shape, values: Array(parameters[slice.range])))
            if !model.cell.hasRecurrentBias, slice.name.hasPrefix("rnn.bias_ih_l") {
                let name = slice.name.replacingOccurrences(of: "bias_ih", with: "bias_hh")
                tensors.append(SafetensorsTensor(name: name, shape: slice.shape, values: Array(repeating: 0, count: slice.count)))
            }
        }
        return tensors
    }

    /// `exp_avg.rnn.weight_ih_l0`, …: one tensor per (state buffer, parameter slice).
    func optimizerTensors(_ t: TrainingState) -> [SafetensorsTensor] {
        let layout = ParameterLayout(model)
        return t.optimizerBuffers.flatMap { buffer in
            layout.slices.map { slice in
                SafetensorsTensor(name: "\(buffer.name).\(slice.name)", shape: slice.shape, values: Array(buffer.values[slice.range]))
            }
        }
    }

    func hiddenTensors(_ t: TrainingState) -> [SafetensorsTensor] {
        let shape = [model.layerCount, t.config.streams, model.hiddenSize]
        var hidden = [SafetensorsTensor(name: "h", shape: shape, values: t.hiddenH)]
        if model.cell.hasCellState { hidden.append(SafetensorsTensor(name: "c", shape: shape, values: t.hiddenC)) }
        return hidden
    }

    /// Sizes against the model and config, then every value finite (named by tensor).
    func checkConsistent(path: String) throws {
        func fail(_ reason: String) -> CheckpointError { .inconsistent(path: path, reason: reason) }
        let layout = ParameterLayout(model)
        guard vocabulary.count == model.vocabularySize else {
            throw fail("vocabulary has \(vocabulary.count) symbols, the model \(model.vocabularySize)")
        }
        guard labels.count == (model.labelCount ?? 0) else {
            throw fail("\(labels.count) labels, the model has \(model.labelCount ?? 0) classes")
        }
        guard parameters.count == layout.count else {
            throw fail("\(parameters.count) parameters, the model has \(layout.count)")
        }
        for slice in layout.slices {
            try Self.requireFinite(parameters[slice.range], tensor: slice.name, path: path)
        }
        guard let t = training else { return }
        let c = t.config
        guard c.cell == model.cell, c.layers == model.layerCount, c.hidden == model.hiddenSize,
              (c.bidirectional ?? false) == model.bidirectional, c.isClassifier == (model.labelCount != nil),
              (c.pooling ?? .last) == model.pooling else {
            throw fail("training config (\(c.cell), \(c.layers) layers, hidden \(c.hidden)) is not the model \(Self.modelJSON(model))")
        }
        guard t.step >= 0, t.optimizerStepCount >= 0, t.optimizerStepCount <= t.step else {
            throw fail("step \(t.step) and optimizer step count \(t.optimizerStepCount) must satisfy 0 ≤ count ≤ step")
        }
        guard t.optimizerBuffers.map(\.name) == c.optimizer.kind.stateBufferNames else {
            throw fail("optimizer buffers \(t.optimizerBuffers.map(\.name)), \(c.optimizer.kind) keeps \(c.optimizer.kind.stateBufferNames)")
        }
        for buffer in t.optimizerBuffers {
            guard buffer.values.count == layout.count else {
                throw fail("optimizer buffer \(buffer.name) has \(buffer.values.count) values, the model \(layout.count)")
            }
            for slice in layout.slices {
                try Self.requireFinite(buffer.values[slice.range], tensor: "\(buffer.name).\(slice.name)", path: path)
            }
        }
        let stateCount = MemoryBudget.multiply(MemoryBudget.multiply(model.layerCount, c.streams), model.hiddenSize) ?? -1
        let cCount = model.cell.hasCellState ? stateCount : 0
        guard t.hiddenH.count == stateCount, t.hiddenC.count == cCount else {
            throw fail("carried state has \(t.hiddenH.count) h and \(t.hiddenC.count) c values, (L, N, H) = (\(model.layerCount), \(c.streams), \(model.hiddenSize)) needs \(stateCount) and \(cCount)")
        }
        try Self.requireFinite(t.hiddenH[...], tensor: "h", path: path)
        try Self.requireFinite(t.hiddenC[...], tensor: "c", path: path)
    }

    static func requireFinite(_ values: ArraySlice<Float>, tensor: String, path: String) throws(CheckpointError) {
        guard let bad = values.firstIndex(where: { !$0.isFinite }) else { return }
        throw CheckpointError.nonFinite(path: path, tensor: tensor, index: bad - values.startIndex,
                                        value: "\(values[bad])")
    }

    /// The directory about to replace the old one must read back as exactly this checkpoint.
    func checkReadBack(_ read: Checkpoint, path: String) throws {
        func same(_ a: [Float], _ b: [Float]) -> Bool { a.map(\.bitPattern) == b.map(\.bitPattern) }
        var differing: String?
        if read.model != model || read.vocabulary != vocabulary || read.labels != labels { differing = "config, vocabulary or labels" }
        else if !same(read.parameters, parameters) { differing = "parameters" }
        else if (read.training == nil) != (training == nil) { differing = "training state presence" }
        else if let a = read.training, let b = training {
            if a.config != b.config || a.step != b.step || a.corpusDigest != b.corpusDigest || a.corpusPath != b.corpusPath
                || a.randomState != b.randomState || a.optimizerStepCount != b.optimizerStepCount {
                differing = "state.json or optimizer metadata"
            } else if a.optimizerBuffers.map(\.name) != b.optimizerBuffers.map(\.name)
                        || !zip(a.optimizerBuffers, b.optimizerBuffers).allSatisfy({ same($0.values, $1.values) }) {
                differing = "optimizer state"
            } else if !same(a.hiddenH, b.hiddenH) || !same(a.hiddenC, b.hiddenC) {
                differing = "carried state"
            }
        }
        if let differing { throw CheckpointError.readBackMismatch(path: path, what: differing) }
    }

    // MARK: Metadata

    /// {"cell":"lstm","hidden_size":256,"num_layers":2,"vocab_size":65}; a classifier adds
    /// "num_labels", bidirectional "bidirectional":true, mean-pooled "pooling":"mean" (keys sorted).
    public static func modelJSON(_ m: ModelConfig) -> String {
        let bidirectional = m.bidirectional ? "\"bidirectional\":true," : ""
        let labels = m.labelCount.map { "\"num_labels\":\($0)," } ?? ""
        let pooling = m.pooling == .last ? "" : "\"pooling\":\"\(m.pooling.rawValue)\","
        return "{\(bidirectional)\"cell\":\"\(m.cell.rawValue)\",\"hidden_size\":\(m.hiddenSize),\(labels)\"num_layers\":\(m.layerCount),\(pooling)\"vocab_size\":\(m.vocabularySize)}"
    }

    /// The most classes a classifier's metadata may declare.
    static let maximumLabelCount = 1 << 20

    /// Unicode has 1,114,112 code points; a vocabulary of scalars cannot be larger.
    static let maximumVocabularySize = 0x110000

    static func parseModelJSON(_ text: String, path: String) throws -> ModelConfig {
        let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let pooling = (object?["pooling"] as? String).flatMap(Pooling.init(rawValue:))
        guard let object,
              let cellName = object["cell"] as? String, let cell = CellType(rawValue: cellName),
              let hidden = object["hidden_size"] as? Int, let layers = object["num_layers"] as? Int,
              let vocabulary = object["vocab_size"] as? Int, hidden > 0, layers > 0, vocabulary > 0,
              vocabulary <= maximumVocabularySize,
              object["bidirectional"] == nil || object["bidirectional"] is Bool,
              object["pooling"] == nil || pooling != nil,
              object["num_labels"] == nil || (object["num_labels"] as? Int).map({ $0 > 0 && $0 <= maximumLabelCount }) == true else {
            throw TrainingError.checkpoint("\(path): config metadata must look like \(modelJSON(ModelConfig(cell: .lstm, vocabularySize: 65, hiddenSize: 256, layerCount: 2))), got \(text)")
        }
        let bidirectional = object["bidirectional"] as? Bool ?? false, labels = object["num_labels"] as? Int
        guard !bidirectional || labels != nil else {
            throw TrainingError.checkpoint("\(path): config metadata \(text) is bidirectional without num_labels: only classifiers are bidirectional")
        }
        guard (pooling ?? .last) == .last || labels != nil else {
            throw TrainingError.checkpoint("\(path): config metadata \(text) has pooling without num_labels: only classifiers pool")
        }
        return ModelConfig(cell: cell, vocabularySize: vocabulary, hiddenSize: hidden, layerCount: layers,
                           bidirectional: bidirectional, labelCount: labels, pooling: pooling ?? .last)
    }

    struct StateFile: Codable {
        var step: Int
        var corpus_digest: String
        var random_state: [UInt64]
        var training_config: TrainingConfig
        var corpus_path: String?
        var log_jsonl: String?
    }
}

/// Why a checkpoint was not written. The previous checkpoint stays in place in every case.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    /// A parameter, optimizer or carried-state tensor holds NaN or ±infinity (`value` as text).
    case nonFinite(path: String, tensor: String, index: Int, value: String)
    /// Sizes that do not agree with the model or the training config.
    case inconsistent(path: String, reason: String)
    /// The written directory did not read back as the checkpoint (a file-system fault).
    case readBackMismatch(path: String, what: String)

    public var description: String {
        switch self {
        case let .nonFinite(path, tensor, index, value):
            return "refusing to write checkpoint \(path): tensor \(tensor) holds \(value) at index \(index); the previous checkpoint is kept"
        case let .inconsistent(path, reason):
            return "refusing to write checkpoint \(path): \(reason)"
        case let .readBackMismatch(path, what):
            return "checkpoint \(path) did not read back as written (\(what) differ); the previous checkpoint is kept"
        }
    }
}
