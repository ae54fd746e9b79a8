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

        public init(config: TrainingConfig, step: Int, corpusDigest: String, randomState: [UInt64],
                    optimizerStepCount: Int, optimizerBuffers: [(name: String, values: [Float])],
                    hiddenH: [Float], hiddenC: [Float]) {
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

    public init(model: ModelConfig, vocabulary: Vocabulary, parameters: [Float], training: TrainingState? = nil) {
        self.model = model
        self.vocabulary = vocabulary
        self.parameters = parameters
        self.training = training
    }

    static let modelFile = "model.safetensors", optimizerFile = "optimizer.safetensors"
    static let hiddenFile = "hidden.safetensors", stateFile = "state.json"

    // MARK: Write

    public func write(to directory: URL) throws {
        var files = [Self.modelFile: Safetensors.encode(tensors: modelTensors(), metadata: [
            "config": Self.modelJSON(model),
            "vocabulary": String(decoding: try JSONEncoder().encode(vocabulary), as: UTF8.self),
            "format": "recur-1",
        ])]
        if let t = training {
            let layout = ParameterLayout(model)
            var optimizerTensors: [SafetensorsTensor] = []
            for buffer in t.optimizerBuffers {
                for slice in layout.slices {
                    optimizerTensors.append(SafetensorsTensor(name: "\(buffer.name).\(slice.name)", shape: slice.shape,
                                                              values: Array(buffer.values[slice.range])))
                }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            files[Self.optimizerFile] = Safetensors.encode(tensors: optimizerTensors, metadata: [
                "optimizer": String(decoding: try encoder.encode(t.config.optimizer), as: UTF8.self),
                "step_count": String(t.optimizerStepCount),
                "buffers": t.optimizerBuffers.map(\.name).joined(separator: ","),
            ])
            let stateShape = [model.layerCount, t.config.streams, model.hiddenSize]
            var hidden = [SafetensorsTensor(name: "h", shape: stateShape, values: t.hiddenH)]
            if model.cell.hasCellState { hidden.append(SafetensorsTensor(name: "c", shape: stateShape, values: t.hiddenC)) }
            files[Self.hiddenFile] = Safetensors.encode(tensors: hidden)
            let state = StateFile(step: t.step, corpus_digest: t.corpusDigest, random_state: t.randomState,
                                  training_config: t.config)
            files[Self.stateFile] = Array(try encoder.encode(state))
        }
        try AtomicDirectory.write(files, to: directory)
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

    // MARK: Read

    /// Reads a checkpoint directory; `training` is filled when state.json is present.
    public static func read(from directory: URL) throws -> Checkpoint {
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw TrainingError.checkpoint("checkpoint \(directory.path) does not exist")
        }
        let (tensors, metadata) = try decode(file: modelFile, in: directory)
        guard let configText = metadata["config"], let vocabularyText = metadata["vocabulary"] else {
            throw TrainingError.checkpoint("\(directory.path)/\(modelFile) has no \"config\" and \"vocabulary\" metadata")
        }
        let model = try parseModelJSON(configText, path: directory.path)
        let vocabulary: Vocabulary
        do {
            vocabulary = try JSONDecoder().decode(Vocabulary.self, from: Data(vocabularyText.utf8))
        } catch {
            throw TrainingError.checkpoint("\(directory.path): unreadable vocabulary metadata: \(error)")
        }
        guard vocabulary.count == model.vocabularySize else {
            throw TrainingError.checkpoint("\(directory.path): vocabulary has \(vocabulary.count) symbols, config says \(model.vocabularySize)")
        }
        let layout = ParameterLayout(model)
        var parameters = [Float](repeating: 0, count: layout.count)
        for slice in layout.slices {
            let values = try tensor(slice.name, shape: slice.shape, in: tensors, path: directory.path)
            parameters.replaceSubrange(slice.range, with: values)
            if !model.cell.hasRecurrentBias, slice.name.hasPrefix("rnn.bias_ih_l") {
                let name = slice.name.replacingOccurrences(of: "bias_ih", with: "bias_hh")
                if tensors[name] != nil {
                    let extra = try tensor(name, shape: slice.shape, in: tensors, path: directory.path)
                    for i in 0..<slice.count { parameters[slice.offset + i] += extra[i] }
                }
            }
        }
        var checkpoint = Checkpoint(model: model, vocabulary: vocabulary, parameters: parameters)
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent(stateFile).path) {
            checkpoint.training = try readTrainingState(directory, layout: layout)
        }
        return checkpoint
    }

    private static func readTrainingState(_ directory: URL, layout: ParameterLayout) throws -> TrainingState {
        let stateBytes = try AtomicDirectory.read(stateFile, in: directory)
        let state: StateFile
        do {
            state = try JSONDecoder().decode(StateFile.self, from: Data(stateBytes))
        } catch {
            throw TrainingError.checkpoint("\(directory.path)/\(stateFile) is unreadable: \(error)")
        }
        let (optimizerTensors, optimizerMeta) = try decode(file: optimizerFile, in: directory)
        let names = (optimizerMeta["buffers"] ?? "").split(separator: ",").map(String.init)
        var buffers: [(name: String, values: [Float])] = []
        for name in names {
            var values: [Float] = []
            values.reserveCapacity(layout.count)
            for slice in layout.slices {
                values += try tensor("\(name).\(slice.name)", shape: slice.shape, in: optimizerTensors, path: directory.path)
            }
            buffers.append((name, values))
        }
        let (hidden, _) = try decode(file: hiddenFile, in: directory)
        let shape = [layout.config.layerCount, state.training_config.streams, layout.config.hiddenSize]
        let h = try tensor("h", shape: shape, in: hidden, path: directory.path)
        let c = layout.config.cell.hasCellState ? try tensor("c", shape: shape, in: hidden, path: directory.path) : []
        return TrainingState(config: state.training_config, step: state.step, corpusDigest: state.corpus_digest,
                             randomState: state.random_state,
                             optimizerStepCount: Int(optimizerMeta["step_count"] ?? "") ?? 0,
                             optimizerBuffers: buffers, hiddenH: h, hiddenC: c)
    }

    private static func decode(file: String, in directory: URL) throws -> ([String: SafetensorsTensor], [String: String]) {
        let bytes: [UInt8]
        do {
            bytes = try AtomicDirectory.read(file, in: directory)
        } catch {
            throw TrainingError.checkpoint("\(error)")
        }
        do {
            return try Safetensors.decode(bytes)
        } catch {
            throw TrainingError.checkpoint("\(directory.path)/\(file): \(error)")
        }
    }

    private static func tensor(_ name: String, shape: [Int], in tensors: [String: SafetensorsTensor], path: String) throws -> [Float] {
        guard let t = tensors[name] else {
            throw TrainingError.checkpoint("checkpoint \(path) has no tensor \(name): it is a checkpoint of another model")
        }
        guard t.shape == shape else {
            throw TrainingError.checkpoint("checkpoint \(path): \(name) has shape \(t.shape), expected \(shape): it is a checkpoint of another model")
        }
        return t.values
    }

    // MARK: Metadata

    /// {"cell":"lstm","hidden_size":256,"num_layers":2,"vocab_size":65}
    public static func modelJSON(_ m: ModelConfig) -> String {
        "{\"cell\":\"\(m.cell.rawValue)\",\"hidden_size\":\(m.hiddenSize),\"num_layers\":\(m.layerCount),\"vocab_size\":\(m.vocabularySize)}"
    }

    static func parseModelJSON(_ text: String, path: String) throws -> ModelConfig {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let cellName = object["cell"] as? String, let cell = CellType(rawValue: cellName),
              let hidden = object["hidden_size"] as? Int, let layers = object["num_layers"] as? Int,
              let vocabulary = object["vocab_size"] as? Int, hidden > 0, layers > 0, vocabulary > 0 else {
            throw TrainingError.checkpoint("\(path): config metadata must look like \(modelJSON(ModelConfig(cell: .lstm, vocabularySize: 65, hiddenSize: 256, layerCount: 2))), got \(text)")
        }
        return ModelConfig(cell: cell, vocabularySize: vocabulary, hiddenSize: hidden, layerCount: layers)
    }

    private struct StateFile: Codable {
        var step: Int
        var corpus_digest: String
        var random_state: [UInt64]
        var training_config: TrainingConfig
    }
}
