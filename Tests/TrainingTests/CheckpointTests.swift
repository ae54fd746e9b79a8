import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// Checkpoint directories: full round trips, PyTorch's two-bias naming for RNN/LSTM, refusal of
/// a checkpoint of another model or run, and atomic replacement.
final class CheckpointTests: XCTestCase {
    typealias F = TrainingFixtures

    /// A vocabulary with a newline, a quote, a backslash and scalars beyond ASCII and the BMP,
    /// so that the JSON metadata must escape and encode.
    static let vocabulary = Vocabulary(of: "\n \"\\abcé\u{1F600}")

    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var random = FixtureRandom(seed: seed)
        return (0..<count).map { _ in Float(random.uniform(2)) }
    }

    /// A checkpoint with every field set to distinct non-trivial values.
    static func fullCheckpoint(cell: CellType, layers: Int = 2, hidden: Int = 3, streams: Int = 4) -> Checkpoint {
        var config = TrainingFixtures.config(cell: cell, layers: layers, hidden: hidden, streams: streams, chunkStreams: 2,
                                             steps: 99, optimizer: OptimizerConfig(kind: .adam, learningRate: 3e-3))
        config.learningRateDecayEvery = 10
        config.learningRateDecay = 0.5
        let model = config.model(vocabularySize: vocabulary.count)
        let count = ParameterLayout(model).count
        let stateCount = layers * streams * hidden
        let training = Checkpoint.TrainingState(
            config: config, step: 42, corpusDigest: String(repeating: "ab", count: 32),
            randomState: [1, 0xFFFF_FFFF_FFFF_FFFF, 3, 0x8000_0000_0000_0000],
            optimizerStepCount: 42,
            optimizerBuffers: [("exp_avg", values(count, seed: 2)), ("exp_avg_sq", values(count, seed: 3).map(abs))],
            hiddenH: values(stateCount, seed: 4), hiddenC: cell == .lstm ? values(stateCount, seed: 5) : [])
        return Checkpoint(model: model, vocabulary: vocabulary, parameters: values(count, seed: 1), training: training)
    }

    static func assertEqual(_ a: Checkpoint, _ b: Checkpoint, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.model, b.model, file: file, line: line)
        XCTAssertEqual(a.vocabulary.scalars, b.vocabulary.scalars, file: file, line: line)
        XCTAssertEqual(F.bits(a.parameters), F.bits(b.parameters), "parameters", file: file, line: line)
        XCTAssertEqual(a.training == nil, b.training == nil, file: file, line: line)
        guard let x = a.training, let y = b.training else { return }
        XCTAssertEqual(x.config, y.config, file: file, line: line)
        XCTAssertEqual(x.step, y.step, file: file, line: line)
        XCTAssertEqual(x.corpusDigest, y.corpusDigest, file: file, line: line)
        XCTAssertEqual(x.randomState, y.randomState, file: file, line: line)
        XCTAssertEqual(x.optimizerStepCount, y.optimizerStepCount, file: file, line: line)
        XCTAssertEqual(x.optimizerBuffers.map(\.name), y.optimizerBuffers.map(\.name), file: file, line: line)
        XCTAssertEqual(x.optimizerBuffers.map { F.bits($0.values) }, y.optimizerBuffers.map { F.bits($0.values) },
                       "optimizer buffers", file: file, line: line)
        XCTAssertEqual(F.bits(x.hiddenH), F.bits(y.hiddenH), "h", file: file, line: line)
        XCTAssertEqual(F.bits(x.hiddenC), F.bits(y.hiddenC), "c", file: file, line: line)
    }

    // MARK: Round trips

    func testEveryFieldRoundTripsForEveryCell() throws {
        let directory = TemporaryDirectory()
        for cell in CellType.allCases {
            let checkpoint = Self.fullCheckpoint(cell: cell)
            let url = directory.child("\(cell)")
            try checkpoint.write(to: url)
            let files = try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
            XCTAssertEqual(files, ["hidden.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"])
            Self.assertEqual(try Checkpoint.read(from: url), checkpoint)
        }
    }

    func testBareModelRoundTripsWithoutTrainingState() throws {
        let directory = TemporaryDirectory()
        var checkpoint = Self.fullCheckpoint(cell: .gru, layers: 1)
        checkpoint.training = nil
        try checkpoint.write(to: directory.child("bare"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.child("bare").path), ["model.safetensors"])
        let read = try Checkpoint.read(from: directory.child("bare"))
        XCTAssertNil(read.training)
        Self.assertEqual(read, checkpoint)
    }

    /// The state a session writes is the state a resumed session starts from.
    func testSessionCheckpointRestoresStepStateAndOptimizer() throws {
        let corpus = F.playCorpus(characters: 1_500)
        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("run")
        let config = F.config(cell: .lstm, layers: 2, hidden: 6, streams: 4, window: 5, chunkStreams: 2, steps: 3)
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        let (trainer, _, _) = try F.run(session)
        let state = F.carriedState(trainer)
        XCTAssertTrue(state.h.contains { $0 != 0 } && state.c.contains { $0 != 0 }, "fixture: state carried")

        let saved = try Checkpoint.read(from: options.checkpointDirectory!)
        let training = try XCTUnwrap(saved.training)
        XCTAssertEqual(training.step, 3)
        XCTAssertEqual(training.config, config)
        XCTAssertEqual(training.corpusDigest, corpus.digest)
        XCTAssertEqual(training.randomState, session.random.state)
        XCTAssertEqual(saved.vocabulary, corpus.vocabulary)
        XCTAssertEqual(F.bits(saved.parameters), F.bits(session.update.values))
        XCTAssertEqual(F.bits(training.hiddenH), F.bits(state.h))
        XCTAssertEqual(F.bits(training.hiddenC), F.bits(state.c))
        XCTAssertEqual(training.optimizerStepCount, 3)

        options.resume = true
        var longer = config
        longer.steps = 6
        let resumed = try TrainingSession(config: longer, corpus: corpus, options: options)
        XCTAssertEqual(resumed.step, 3)
        XCTAssertEqual(resumed.random, session.random)
        XCTAssertEqual(F.bits(resumed.update.values), F.bits(session.update.values))
        XCTAssertEqual(resumed.update.optimizer.stepCount, 3)
        XCTAssertEqual(resumed.update.optimizer.stateBuffers.map { F.bits($0.values) },
                       session.update.optimizer.stateBuffers.map { F.bits($0.values) })
        let restored = try XCTUnwrap(resumed.restoredState)
        XCTAssertEqual(F.bits(restored.h), F.bits(state.h))
        XCTAssertEqual(F.bits(restored.c), F.bits(state.c))
        XCTAssertEqual(resumed.lastCheckpoint, options.checkpointDirectory!.path)
    }

    // MARK: PyTorch's bias pair

    /// RNN and LSTM write their one bias as bias_ih and zeros as bias_hh (PyTorch has both);
    /// GRU writes its two real biases.
    func testRNNAndLSTMWriteZeroRecurrentBias() throws {
        let directory = TemporaryDirectory()
        for cell in CellType.allCases {
            let checkpoint = Self.fullCheckpoint(cell: cell)
            let url = directory.child("\(cell)")
            try checkpoint.write(to: url)
            let (tensors, metadata) = try Safetensors.decode(Array(try Data(contentsOf: url.appendingPathComponent("model.safetensors"))))
            XCTAssertEqual(metadata["config"], Checkpoint.modelJSON(checkpoint.model))
            let layout = ParameterLayout(checkpoint.model)
            let G = cell.gateCount, H = checkpoint.model.hiddenSize
            for l in 0..<2 {
                let ih = try XCTUnwrap(tensors["rnn.bias_ih_l\(l)"], "\(cell) l\(l)")
                let hh = try XCTUnwrap(tensors["rnn.bias_hh_l\(l)"], "\(cell) l\(l)")
                XCTAssertEqual(ih.shape, [G * H])
                XCTAssertEqual(hh.shape, [G * H])
                XCTAssertEqual(ih.values, Array(checkpoint.parameters[layout.slice(named: "rnn.bias_ih_l\(l)")!.range]))
                if cell == .gru {
                    XCTAssertEqual(hh.values, Array(checkpoint.parameters[layout.slice(named: "rnn.bias_hh_l\(l)")!.range]))
                } else {
                    XCTAssertEqual(hh.values, [Float](repeating: 0, count: G * H), "\(cell): bias_hh must be zeros")
                }
                XCTAssertEqual(tensors["rnn.weight_ih_l\(l)"]?.shape, [G * H, l == 0 ? Self.vocabulary.count : H])
                XCTAssertEqual(tensors["rnn.weight_hh_l\(l)"]?.shape, [G * H, H])
            }
            XCTAssertEqual(tensors["head.weight"]?.shape, [Self.vocabulary.count, H])
            XCTAssertEqual(tensors["head.bias"]?.shape, [Self.vocabulary.count])
            XCTAssertEqual(tensors.count, 2 * 4 + 2, "\(cell): tensor names \(tensors.keys.sorted())")
        }
    }

    /// A model file as PyTorch writes it, with a non-zero bias_hh: reading sums the two biases,
    /// so the loss is that of PyTorch's b_ih + b_hh.
    func testHandMadeFileWithNonZeroRecurrentBiasIsSummed() throws {
        for cell in [CellType.rnn, .lstm] {
            let model = ModelConfig(cell: cell, vocabularySize: 4, hiddenSize: 2, layerCount: 1)
            let G = cell.gateCount
            let weightIH = Self.values(G * 2 * 4, seed: 10), weightHH = Self.values(G * 2 * 2, seed: 11)
            let biasIH = Self.values(G * 2, seed: 12), biasHH = Self.values(G * 2, seed: 13)
            let headWeight = Self.values(4 * 2, seed: 14), headBias = Self.values(4, seed: 15)
            // PyTorch's state_dict order: weights, then bias_ih, bias_hh.
            let tensors = [
                SafetensorsTensor(name: "head.bias", shape: [4], values: headBias),
                SafetensorsTensor(name: "rnn.weight_ih_l0", shape: [G * 2, 4], values: weightIH),
                SafetensorsTensor(name: "rnn.weight_hh_l0", shape: [G * 2, 2], values: weightHH),
                SafetensorsTensor(name: "rnn.bias_ih_l0", shape: [G * 2], values: biasIH),
                SafetensorsTensor(name: "rnn.bias_hh_l0", shape: [G * 2], values: biasHH),
                SafetensorsTensor(name: "head.weight", shape: [4, 2], values: headWeight),
            ]
            let metadata = ["config": "{\"vocab_size\": 4, \"cell\": \"\(cell)\", \"num_layers\": 1, \"hidden_size\": 2}",
                            "vocabulary": "[\"a\", \"b\", \"c\", \"d\"]"]
            let directory = TemporaryDirectory()
            try Data(Safetensors.encode(tensors: tensors, metadata: metadata))
                .write(to: directory.child("model.safetensors"))
            let read = try Checkpoint.read(from: directory.url)
            XCTAssertEqual(read.model, model)
            XCTAssertEqual(read.vocabulary, Vocabulary(of: "abcd"))
            XCTAssertNil(read.training)
            let summedBias = zip(biasIH, biasHH).map { $0 + $1 }
            XCTAssertEqual(read.parameters, weightIH + weightHH + summedBias + headWeight + headBias, "\(cell)")
        }
    }

    // MARK: Refusals

    private func writeRun(hidden: Int, in directory: TemporaryDirectory, corpus: Corpus) throws -> (TrainingConfig, RunOptions) {
        var options = RunOptions()
        options.checkpointDirectory = directory.child("run")
        let config = F.config(cell: .lstm, hidden: hidden, streams: 4, window: 5, chunkStreams: 2, steps: 2)
        try F.run(TrainingSession(config: config, corpus: corpus, options: options))
        return (config, options)
    }

    func testResumeWithAnotherHiddenSizeNamesTheDifference() throws {
        let corpus = F.playCorpus(characters: 800)
        let directory = TemporaryDirectory()
        var (config, options) = try writeRun(hidden: 6, in: directory, corpus: corpus)
        let before = try Self.snapshot(options.checkpointDirectory!)
        options.resume = true
        config.hidden = 9
        config.steps = 4
        XCTAssertThrowsError(try TrainingSession(config: config, corpus: corpus, options: options)) { error in
            guard case TrainingError.startMismatch(.hidden, saved: "6", requested: "9", let path, resumed: true)? = error as? TrainingError else {
                return XCTFail("expected TrainingError.startMismatch of hidden 6 → 9, got \(error)")
            }
            XCTAssertEqual(path, options.checkpointDirectory!.path)
            let message = "\(error)"
            XCTAssertTrue(message.contains("hidden"), message)
            XCTAssertTrue(message.contains("6") && message.contains("9"), message)
            XCTAssertTrue(message.contains(options.checkpointDirectory!.path), message)
            XCTAssertFalse(message.contains("\n"), "one line: \(message)")
        }
        XCTAssertEqual(try Self.snapshot(options.checkpointDirectory!), before, "a refused resume must not touch the checkpoint")
    }

    func testResumeWithAnotherOptimizerOrCorpusIsRefused() throws {
        let corpus = F.playCorpus(characters: 800)
        let directory = TemporaryDirectory()
        var (config, options) = try writeRun(hidden: 6, in: directory, corpus: corpus)
        options.resume = true
        var otherOptimizer = config
        otherOptimizer.optimizer = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        XCTAssertThrowsError(try TrainingSession(config: otherOptimizer, corpus: corpus, options: options)) { error in
            XCTAssertTrue("\(error)".contains("optimizer"), "\(error)")
        }
        config.steps = 5
        let otherCorpus = F.playCorpus(characters: 800, seed: 99)
        XCTAssertThrowsError(try TrainingSession(config: config, corpus: otherCorpus, options: options)) { error in
            XCTAssertTrue("\(error)".contains("another corpus"), "\(error)")
        }
        // Nothing to resume in an empty directory.
        options.checkpointDirectory = directory.child("nothing")
        XCTAssertThrowsError(try TrainingSession(config: config, corpus: corpus, options: options)) { error in
            XCTAssertTrue("\(error)".contains("nothing to resume"), "\(error)")
        }
    }

    func testInitFromAnotherModelIsRefused() throws {
        let corpus = F.playCorpus(characters: 800)
        let directory = TemporaryDirectory()
        let (config, written) = try writeRun(hidden: 6, in: directory, corpus: corpus)
        var options = RunOptions()
        options.initFrom = written.checkpointDirectory
        var other = config
        other.hidden = 7
        XCTAssertThrowsError(try TrainingSession(config: other, corpus: corpus, options: options)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("another model") && message.contains("hidden 6 ≠ 7"), message)
        }
        // The same model starts from the saved weights, at step 0.
        let started = try TrainingSession(config: config, corpus: corpus, options: options)
        XCTAssertEqual(started.step, 0)
        XCTAssertEqual(started.update.values, try Checkpoint.read(from: written.checkpointDirectory!).parameters)
    }

    func testReadingAMissingOrForeignDirectoryNamesIt() throws {
        let directory = TemporaryDirectory()
        let missing = directory.child("absent")
        XCTAssertThrowsError(try Checkpoint.read(from: missing)) { error in
            XCTAssertTrue("\(error)".contains(missing.path) && "\(error)".contains("does not exist"), "\(error)")
        }
        // A tensor of the wrong shape: the model file of another model under this config.
        var checkpoint = Self.fullCheckpoint(cell: .rnn, layers: 1)
        checkpoint.training = nil
        try checkpoint.write(to: directory.child("rnn"))
        let bytes = try Data(contentsOf: directory.child("rnn/model.safetensors"))
        var (tensors, metadata) = try Safetensors.decode(Array(bytes))
        metadata["config"] = Checkpoint.modelJSON(ModelConfig(cell: .rnn, vocabularySize: Self.vocabulary.count, hiddenSize: 4, layerCount: 1))
        let names = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "head.weight", "head.bias"]
        try Data(Safetensors.encode(tensors: names.map { tensors.removeValue(forKey: $0)! }, metadata: metadata))
            .write(to: directory.child("rnn/model.safetensors"))
        XCTAssertThrowsError(try Checkpoint.read(from: directory.child("rnn"))) { error in
            XCTAssertTrue("\(error)".contains("another model"), "\(error)")
        }
    }

    // MARK: Replacement

    /// Writing over a checkpoint leaves exactly the new one: no stale files of the old one, no
    /// temporary siblings.
    func testWritingOverACheckpointKeepsOnlyTheNewOne() throws {
        let directory = TemporaryDirectory()
        let url = directory.child("ckpt")
        try Self.fullCheckpoint(cell: .lstm).write(to: url)
        var replacement = Self.fullCheckpoint(cell: .gru, layers: 1, hidden: 5)
        replacement.training = nil
        try replacement.write(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.path), ["model.safetensors"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["ckpt"])
        Self.assertEqual(try Checkpoint.read(from: url), replacement)

        let third = Self.fullCheckpoint(cell: .rnn)
        try third.write(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["ckpt"])
        Self.assertEqual(try Checkpoint.read(from: url), third)
    }

    /// name → bytes of every file in a directory.
    static func snapshot(_ directory: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            files[name] = try Data(contentsOf: directory.appendingPathComponent(name))
        }
        return files
    }
}
