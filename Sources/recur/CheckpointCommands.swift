import ArgumentParser
import Foundation
import Recurrent
import Training

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample", abstract: "Generate text from a checkpoint.")

    @Option(help: "Checkpoint directory.")
    var checkpoint: String
    @Option(help: "Characters to generate.")
    var length = 500
    @Option(help: "Sampling temperature (> 0; lower is more conservative).")
    var temperature = 1.0
    @Option(help: "Text to condition on; it is printed before the generated text.")
    var prime = ""
    @Option(help: "Random seed of the sampler.")
    var seed: UInt64 = 1
    @Flag(help: "Always take the most likely next character.")
    var argmax = false

    func validate() throws {
        guard temperature > 0, temperature.isFinite else { throw ValidationError("--temperature must be positive, got \(temperature)") }
        guard length >= 0 else { throw ValidationError("--length must be ≥ 0") }
        try MemoryBudget.require(MemoryBudget.samplingBytes(parameterCount: 0, length: length), for: "--length \(length)")
    }

    func run() throws {
        let c = try readCheckpoint(checkpoint)
        let text = try Sampler(temperature: temperature, argmax: argmax, seed: seed)
            .sample(model: c.model, vocabulary: c.vocabulary, parameters: c.parameters, prime: prime, length: length)
        print(text)
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Validation loss of a checkpoint on a text file (nats/char and bits/char).",
        discussion: "The validation split is the end of the file, by --val-fraction (the training rule).")

    @Option(help: "Checkpoint directory.")
    var checkpoint: String
    @Option(help: "UTF-8 text file.")
    var data: String
    @Option(name: .customLong("val-fraction"), help: "Fraction of the file (its end) scored (default: the checkpoint's, else 0.1).")
    var valFraction: Double?
    @Option(help: "Window T (default: the checkpoint's, else 64).")
    var seq: Int?
    @Option(name: .customLong("eval-streams"), help: "Score as E contiguous segments from zero state (faster; 1 = exact per-character loss).")
    var evalStreams = 1

    func run() throws {
        let c = try readCheckpoint(checkpoint)
        let corpus = try Corpus.load(path: data)
        let fraction = valFraction ?? c.training?.config.validationFraction ?? 0.1
        guard fraction > 0, fraction < 1 else { throw ValidationError("--val-fraction must be in (0, 1)") }
        let window = seq ?? c.training?.config.window ?? 64
        guard window >= 1, evalStreams >= 1 else { throw ValidationError("--seq and --eval-streams must be at least 1") }
        // Map the file's symbols to the checkpoint's ids; unknown symbols are an error
        // that names them (the vocabulary's own encode error).
        let unknown = corpus.vocabulary.scalars.filter { c.vocabulary.id(of: $0) == nil }
        if !unknown.isEmpty {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: unknown)
            _ = try c.vocabulary.encode(String(view))
        }
        let ids = corpus.vocabulary.scalars.map { c.vocabulary.id(of: $0)! }
        let split = Corpus.trainCount(total: corpus.count, validationFraction: fraction)
        let validation = corpus.tokens[split...].map { ids[Int($0)] }
        guard let r = c.parameters.withUnsafeBufferPointer({
            Evaluator.evaluate(model: c.model, parameters: $0.baseAddress!, tokens: validation, window: window, streams: evalStreams)
        }) else { throw ValidationError("the validation split of \(data) has fewer than 2 characters") }
        print(String(format: "validation loss %.4f nats/char, %.4f bits/char over %d chars", r.natsPerCharacter, r.bitsPerCharacter, r.characters))
    }
}

/// Reads a checkpoint for sample/eval, first repairing an interrupted write; what the repair
/// did goes to stderr (stdout carries the result).
func readCheckpoint(_ path: String) throws -> Checkpoint {
    let url = URL(fileURLWithPath: path)
    if let lines = try? Checkpoint.recover(url) {
        for line in lines { FileHandle.standardError.write(Data("recur: \(line)\n".utf8)) }
    }
    return try Checkpoint.read(from: url)
}
