import Foundation
import Recurrent

/// Reading a checkpoint directory: every file bounded and cross-checked before anything it
/// sizes is allocated; recovery of a half-replaced directory.
extension Checkpoint {
    // MARK: Read

    /// Recovers a checkpoint whose writer died between its two renames, and removes the
    /// temporary siblings of writers that are gone (see `AtomicDirectory.recover`). Returns one
    /// line per action, for the log; empty when there was nothing to do.
    @discardableResult
    public static func recover(_ directory: URL) throws -> [String] {
        try AtomicDirectory.recover(directory, isComplete: isComplete)
    }

    /// A directory that holds a whole checkpoint: all four files of a training checkpoint (or
    /// only the model file) and every one of them reads and checks.
    static func isComplete(_ directory: URL) -> Bool {
        let names = Set((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
        let trainingFiles: Set = [optimizerFile, hiddenFile, stateFile]
        guard names.contains(modelFile), names.isDisjoint(with: trainingFiles) || names.isSuperset(of: trainingFiles) else {
            return false
        }
        return (try? read(from: directory, recovering: false)) != nil
    }

    /// Reads a checkpoint directory; `training` is filled when state.json is present. Every
    /// value read is checked before it is used or anything sized by it is allocated: files
    /// are regular and within `maximumTensorFileBytes`, metadata agrees with the tensor
    /// shapes, state.json with the model, and all weights, optimizer state and carried state
    /// are finite. A directory left missing by a writer that died mid-replace is recovered
    /// first (`recover`). Throws `TrainingError.checkpoint` with one line naming the file.
    public static func read(from directory: URL) throws -> Checkpoint {
        try read(from: directory, recovering: true)
    }

    static func read(from directory: URL, recovering: Bool) throws -> Checkpoint {
        if recovering {
            do {
                try recover(directory)
            } catch {
                throw TrainingError.checkpoint("checkpoint \(directory.path): recovering an interrupted write failed: \(error)")
            }
        }
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw TrainingError.checkpoint("checkpoint \(directory.path) does not exist")
        }
        let path = directory.path
        let (tensors, metadata) = try decode(file: modelFile, in: directory)
        let (model, vocabulary) = try decodeMetadata(metadata, path: path)
        let labels = try decodeLabels(metadata, model: model, path: path)
        let parameters = try decodeParameters(model, tensors, path: path)
        var checkpoint = Checkpoint(model: model, vocabulary: vocabulary, parameters: parameters, labels: labels)
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent(stateFile).path) {
            checkpoint.training = try readTrainingState(directory, layout: ParameterLayout(model))
        }
        return checkpoint
    }

    /// Model config and vocabulary from model.safetensors' metadata, bounded (V ≤ Unicode's
    /// code points, H and L positive) but not yet checked against the tensors.
    static func decodeMetadata(_ metadata: [String: String], path: String) throws -> (ModelConfig, Vocabulary) {
        guard let configText = metadata["config"], let vocabularyText = metadata["vocabulary"] else {
            throw TrainingError.checkpoint("\(path)/\(modelFile) has no \"config\" and \"vocabulary\" metadata")
        }
        let model = try parseModelJSON(configText, path: path)
        let vocabulary: Vocabulary
        do {
            vocabulary = try JSONDecoder().decode(Vocabulary.self, from: Data(vocabularyText.utf8))
        } catch {
            throw TrainingError.checkpoint("\(path): unreadable vocabulary metadata: \(error)")
        }
        guard vocabulary.count == model.vocabularySize else {
            throw TrainingError.checkpoint("\(path): vocabulary has \(vocabulary.count) symbols, config says \(model.vocabularySize)")
        }
        return (model, vocabulary)
    }

    /// A classifier's "labels" metadata: a JSON array of `num_labels` distinct strings.
    static func decodeLabels(_ metadata: [String: String], model: ModelConfig, path: String) throws -> [String] {
        guard let count = model.labelCount else { return [] }
        guard let text = metadata["labels"], let labels = try? JSONDecoder().decode([String].self, from: Data(text.utf8)),
              labels.count == count, Set(labels).count == count else {
            throw TrainingError.checkpoint("\(path)/\(modelFile): a classifier of \(count) classes needs \"labels\" metadata, a JSON array of \(count) distinct names")
        }
        // A hand-made or foreign header is held to what training files allow (no control
        // characters): the names are printed in predict's tab-separated lines.
        for (i, label) in labels.enumerated() {
            if let problem = LabelledExamples.labelProblem(label) {
                throw TrainingError.checkpoint("\(path)/\(modelFile): labels entry \(i): \(problem)")
            }
        }
        return labels
    }

    /// The parameter slab from the model file's tensors, after the metadata is checked against
    /// their shapes (`checkModelAgainstTensors`); every value finite.
    static func decodeParameters(_ model: ModelConfig, _ tensors: [String: SafetensorsTensor], path: String) throws -> [Float] {
        try checkModelAgainstTensors(model, tensors, path: "\(path)/\(modelFile)")
        let layout = ParameterLayout(model)
        var parameters = [Float](repeating: 0, count: layout.count)
        for slice in layout.slices {
            let values = try tensor(slice.name, shape: slice.shape, in: tensors, file: modelFile, path: path)
            parameters.replaceSubrange(slice.range, with: values)
            if !model.cell.hasRecurrentBias, slice.name.hasPrefix("rnn.bias_ih_l") {
                let name = slice.name.replacingOccurrences(of: "bias_ih", with: "bias_hh")
                if tensors[name] != nil {
                    let extra = try tensor(name, shape: slice.shape, in: tensors, file: modelFile, path: path)
                    for i in 0..<slice.count { parameters[slice.offset + i] += extra[i] }
                    try finite(parameters[slice.range], tensor: "\(slice.name) + \(name)", file: modelFile, path: path)
                }
            }
        }
        return parameters
    }

    // MARK: Fuzzing entry points (the read path's own functions, on bytes instead of files)

    /// model.safetensors bytes → checkpoint without training state, as `read` decodes them.
    @_spi(Fuzzing) public static func decodeModelFile(_ bytes: [UInt8]) throws -> Checkpoint {
        let (tensors, metadata) = try decodeSafetensors(bytes, file: modelFile, path: "fuzz")
        let (model, vocabulary) = try decodeMetadata(metadata, path: "fuzz")
        let labels = try decodeLabels(metadata, model: model, path: "fuzz")
        return Checkpoint(model: model, vocabulary: vocabulary, parameters: try decodeParameters(model, tensors, path: "fuzz"), labels: labels)
    }

    /// The `config` and `vocabulary` metadata strings, as `read` decodes them.
    @_spi(Fuzzing) public static func decodeMetadata(config: String, vocabulary: String) throws -> (ModelConfig, Vocabulary) {
        try decodeMetadata(["config": config, "vocabulary": vocabulary], path: "fuzz")
    }

    /// state.json bytes for `model`, as `read` decodes and checks them; returns the step.
    @_spi(Fuzzing) public static func decodeStateFile(_ bytes: [UInt8], model: ModelConfig) throws -> Int {
        try decodeState(bytes, model: model, path: "fuzz").step
    }

    /// The model file's bytes as `write` produces them.
    @_spi(Fuzzing) public func modelFileBytes() throws -> [UInt8] {
        Safetensors.encode(tensors: modelTensors(), metadata: [
            "config": Self.modelJSON(model),
            "vocabulary": String(decoding: try JSONEncoder().encode(vocabulary), as: UTF8.self),
            "format": "recur-1",
        ].merging(model.labelCount == nil ? [:] : ["labels": String(decoding: try JSONEncoder().encode(labels), as: UTF8.self)]) { a, _ in a })
    }

    /// state.json's bytes as `write` produces them (nil without training state).
    @_spi(Fuzzing) public func stateFileBytes() throws -> [UInt8]? {
        guard let t = training else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(StateFile(step: t.step, corpus_digest: t.corpusDigest, random_state: t.randomState,
                                                  training_config: t.config, corpus_path: t.corpusPath, log_jsonl: t.logPath)))
    }

    /// The metadata's sizes must be those of the tensors, checked before the layout (whose
    /// table has L rows and whose count multiplies H, V and G) is built from them: a forged
    /// `num_layers` of 2^40 would otherwise loop for hours and a `hidden_size` of 2^40 overflow.
    static func checkModelAgainstTensors(_ model: ModelConfig, _ tensors: [String: SafetensorsTensor], path: String) throws {
        let G = model.cell.gateCount, H = model.hiddenSize, V = model.vocabularySize, L = model.layerCount
        func expect(_ name: String, _ shape: [Int]) throws {
            guard let t = tensors[name] else {
                throw TrainingError.checkpoint("\(path): config metadata \(modelJSON(model)) needs tensor \(name), which is missing")
            }
            guard t.shape == shape else {
                throw TrainingError.checkpoint("\(path): config metadata \(modelJSON(model)) does not match tensor \(name) of shape \(t.shape): the tensors are of another model")
            }
        }
        guard L <= tensors.count,
              MemoryBudget.parameterCount(cell: model.cell, vocabularySize: V, hiddenSize: H, layers: L).flatMap({ MemoryBudget.multiply($0, 2) }) != nil,
              let GH = MemoryBudget.multiply(G, H) else {
            throw TrainingError.checkpoint("\(path): config metadata \(modelJSON(model)) is larger than the file's \(tensors.count) tensors")
        }
        try expect("head.bias", [model.outputCount])
        try expect("head.weight", [model.outputCount, H * model.directions])
        try expect("rnn.weight_hh_l0", [GH, H])
        try expect("rnn.weight_hh_l\(L - 1)", [GH, H])
        if model.bidirectional { try expect("rnn.weight_hh_l\(L - 1)_reverse", [GH, H]) }
        if tensors["rnn.weight_hh_l\(L)"] != nil {
            throw TrainingError.checkpoint("\(path): config metadata says \(L) layers, the file has rnn.weight_hh_l\(L)")
        }
    }

    private static func readTrainingState(_ directory: URL, layout: ParameterLayout) throws -> TrainingState {
        let path = directory.path, model = layout.config
        let stateBytes: [UInt8]
        do {
            stateBytes = try AtomicDirectory.read(stateFile, in: directory, maximumBytes: maximumStateFileBytes)
        } catch {
            throw TrainingError.checkpoint("\(error)")
        }
        let state = try decodeState(stateBytes, model: model, path: path)
        let config = state.training_config

        let (optimizerTensors, optimizerMeta) = try decode(file: optimizerFile, in: directory)
        let names = (optimizerMeta["buffers"] ?? "").split(separator: ",").map(String.init)
        guard names == config.optimizer.kind.stateBufferNames else {
            throw TrainingError.checkpoint("\(path)/\(optimizerFile): buffers \(names), \(config.optimizer.kind) keeps \(config.optimizer.kind.stateBufferNames)")
        }
        guard let countText = optimizerMeta["step_count"], let stepCount = Int(countText), stepCount >= 0, stepCount <= state.step else {
            throw TrainingError.checkpoint("\(path)/\(optimizerFile): step_count \(optimizerMeta["step_count"].map { "'\($0)'" } ?? "missing") is not a whole number in 0…\(state.step) (the checkpoint's step)")
        }
        var buffers: [(name: String, values: [Float])] = []
        for name in names {
            var values: [Float] = []
            values.reserveCapacity(layout.count)
            for slice in layout.slices {
                values += try tensor("\(name).\(slice.name)", shape: slice.shape, in: optimizerTensors, file: optimizerFile, path: path)
            }
            buffers.append((name, values))
        }
        let (hidden, _) = try decode(file: hiddenFile, in: directory)
        let shape = [model.layerCount, config.streams, model.hiddenSize]
        let h = try tensor("h", shape: shape, in: hidden, file: hiddenFile, path: path)
        let c = model.cell.hasCellState ? try tensor("c", shape: shape, in: hidden, file: hiddenFile, path: path) : []
        return TrainingState(config: config, step: state.step, corpusDigest: state.corpus_digest,
                             randomState: state.random_state, optimizerStepCount: stepCount,
                             optimizerBuffers: buffers, hiddenH: h, hiddenC: c, corpusPath: state.corpus_path,
                             logPath: state.log_jsonl)
    }

    /// The run whose checkpoint `directory` holds, from its state.json alone (nil when there is
    /// none or it cannot be read): enough to tell one run from another before writing over it.
    public static func savedRun(in directory: URL) -> (config: TrainingConfig, step: Int, corpusDigest: String)? {
        guard let bytes = try? AtomicDirectory.read(stateFile, in: directory, maximumBytes: maximumStateFileBytes),
              let state = try? JSONDecoder().decode(StateFile.self, from: Data(bytes)) else { return nil }
        return (state.training_config, state.step, state.corpus_digest)
    }

    /// state.json, checked against `model`: a valid training config of the same model, a step
    /// within the run, a SHA-256 hex digest and a usable generator state.
    static func decodeState(_ bytes: [UInt8], model: ModelConfig, path: String) throws -> StateFile {
        let state: StateFile
        do {
            state = try JSONDecoder().decode(StateFile.self, from: Data(bytes))
        } catch {
            throw TrainingError.checkpoint("\(path)/\(stateFile) is unreadable: \(error)")
        }
        let config = state.training_config
        func fail(_ reason: String) -> TrainingError { .checkpoint("\(path)/\(stateFile): \(reason)") }
        do {
            try config.validate()
        } catch {
            throw fail("invalid training config: \(error)")
        }
        guard config.cell == model.cell, config.layers == model.layerCount, config.hidden == model.hiddenSize else {
            throw fail("training config (\(config.cell), \(config.layers) layers, hidden \(config.hidden)) is not the model \(modelJSON(model)) of \(modelFile)")
        }
        guard state.step >= 0, state.step <= config.steps else {
            throw fail("step \(state.step) is outside 0…\(config.steps) (the run's total steps)")
        }
        guard state.corpus_digest.utf8.count == 64,
              state.corpus_digest.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw fail("corpus_digest is not 64 lowercase hex digits")
        }
        do {
            _ = try SeededGenerator(state: state.random_state)
        } catch {
            throw fail("random_state: \(error)")
        }
        return state
    }

    private static func decode(file: String, in directory: URL) throws -> ([String: SafetensorsTensor], [String: String]) {
        let bytes: [UInt8]
        do {
            bytes = try AtomicDirectory.read(file, in: directory, maximumBytes: maximumTensorFileBytes)
        } catch {
            throw TrainingError.checkpoint("\(error)")
        }
        return try decodeSafetensors(bytes, file: file, path: directory.path)
    }

    static func decodeSafetensors(_ bytes: [UInt8], file: String, path: String) throws -> ([String: SafetensorsTensor], [String: String]) {
        do {
            return try Safetensors.decode(bytes)
        } catch {
            throw TrainingError.checkpoint("\(path)/\(file): \(error)")
        }
    }

    /// The tensor's values, after checking its shape and that every value is finite.
    private static func tensor(_ name: String, shape: [Int], in tensors: [String: SafetensorsTensor],
                               file: String, path: String) throws -> [Float] {
        guard let t = tensors[name] else {
            throw TrainingError.checkpoint("checkpoint \(path) has no tensor \(name): it is a checkpoint of another model")
        }
        guard t.shape == shape else {
            throw TrainingError.checkpoint("checkpoint \(path): \(name) has shape \(t.shape), expected \(shape): it is a checkpoint of another model")
        }
        try finite(t.values[...], tensor: name, file: file, path: path)
        return t.values
    }

    private static func finite(_ values: ArraySlice<Float>, tensor: String, file: String, path: String) throws {
        guard let bad = values.firstIndex(where: { !$0.isFinite }) else { return }
        throw TrainingError.checkpoint("checkpoint \(path): tensor \(tensor) in \(file) holds \(values[bad]) at index \(bad - values.startIndex); a checkpoint with non-finite values cannot be used")
    }
}
