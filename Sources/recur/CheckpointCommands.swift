import ArgumentParser
import Foundation
import Recurrent
import Training

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample", abstract: "Generate text from a checkpoint.",
        usage: "recur sample --checkpoint DIR [<options>]")

    @Option(help: "Checkpoint directory.")
    var checkpoint: String
    @OptionGroup(title: "Sampling") var sampling: SamplingFlags
    @Option(help: "Random seed of the sampler.")
    var seed: UInt64 = 1

    func validate() throws {
        try sampling.validateValues()
    }

    func run() throws {
        let c = try readCheckpoint(checkpoint)
        if c.model.labelCount != nil { throw ValidationError("\(checkpoint) holds a classifier, which does not generate text: use recur predict") }
        let text = try sampling.sampler(seed: seed).sample(model: c.model, vocabulary: c.vocabulary, parameters: c.parameters,
                                                           prime: sampling.prime, length: sampling.sampleLength)
        print(text)
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Loss of a checkpoint on a text file (nats/char and bits/char), or a classifier's metrics on a labelled file.",
        usage: "recur eval --checkpoint DIR [--data PATH] [<options>]",
        discussion: """
        Scores the validation split, the end of the file by --val-fraction (the training \
        rule), or with --all the whole file. Characters outside the checkpoint's vocabulary \
        are skipped and counted (a warning on stderr), or refused with --unknown error. A \
        classifier's checkpoint scores every line label<TAB>text of --data: loss, accuracy, \
        per-class precision, recall and F1, and the confusion matrix.
        """)

    enum UnknownCharacters: String, ExpressibleByArgument, CaseIterable { case skip, error }

    @Option(help: "Checkpoint directory.")
    var checkpoint: String
    @Option(help: "UTF-8 text file, or a classifier's lines label<TAB>text (default: the checkpoint's corpus).")
    var data: String?
    @Flag(help: "Score the whole file, not its validation split.")
    var all = false
    @Option(name: .customLong("val-fraction"), help: "Fraction of the file (its end) scored (default: the checkpoint's, else \(Defaults.config.validationFraction)).")
    var valFraction: Double?
    @Option(help: "Window T (default: the checkpoint's, else \(Defaults.config.window)).")
    var seq: Int?
    @Option(name: .customLong("eval-streams"), help: "Score as E contiguous segments from zero state (faster; 1 = exact per-character loss).")
    var evalStreams = Defaults.run.evalStreams
    @Option(help: "Characters outside the checkpoint's vocabulary: skip (counted, with a warning) or error.")
    var unknown = UnknownCharacters.skip

    func validate() throws {
        if all, valFraction != nil { throw ValidationError("--all and --val-fraction exclude each other") }
        if let valFraction, !(valFraction > 0 && valFraction < 1) {
            throw ValidationError("--val-fraction must be in (0, 1), got \(valFraction)")
        }
        if let seq, seq < 1 { throw ValidationError("--seq must be at least 1, got \(seq)") }
        if evalStreams < 1 { throw ValidationError("--eval-streams must be at least 1, got \(evalStreams)") }
    }

    func run() throws {
        let c = try readCheckpoint(checkpoint)
        if c.model.labelCount != nil {
            if valFraction != nil || seq != nil { throw ValidationError("a classifier's eval scores every line of --data: --val-fraction and --seq do not apply") }
            guard let path = data ?? c.training?.corpusPath else {
                throw ValidationError("\(checkpoint) was trained on built-in data: give --data a labelled file to score")
            }
            return try evaluateClassifier(c, data: path)
        }
        // The checkpoint's own corpus by default: the file it trained on, else the built-in text.
        let corpus = try (data ?? c.training?.corpusPath).map { try Corpus.load(path: $0) } ?? Corpus.builtin(task: nil)
        let window = seq ?? c.training?.config.window ?? Defaults.config.window
        let start = all ? 0 : Corpus.trainCount(total: corpus.count,
                                                validationFraction: valFraction ?? c.training?.config.validationFraction ?? Defaults.config.validationFraction)
        // The file's ids → the checkpoint's; symbols it does not know are -1.
        let ids: [Int32] = corpus.vocabulary.scalars.map { c.vocabulary.id(of: $0) ?? -1 }
        let unknownSymbols = corpus.vocabulary.scalars.filter { c.vocabulary.id(of: $0) == nil }
        if !unknownSymbols.isEmpty, unknown == .error {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: unknownSymbols)
            _ = try c.vocabulary.encode(String(view))   // throws, naming them
        }
        var tokens: [Int32] = []
        tokens.reserveCapacity(corpus.count - start)
        var skipped: [Unicode.Scalar: Int] = [:]
        for token in corpus.tokens[start...] {
            let id = ids[Int(token)]
            if id >= 0 { tokens.append(id) } else { skipped[corpus.vocabulary.scalars[Int(token)], default: 0] += 1 }
        }
        if !skipped.isEmpty {
            let named = skipped.sorted { $0.key.value < $1.key.value }.prefix(10)
                .map { "\(Vocabulary.quoted($0.key)) ×\($0.value)" }.joined(separator: ", ")
            warn("skipped \(skipped.values.reduce(0, +)) characters outside the checkpoint's vocabulary: \(named)\(skipped.count > 10 ? ", …" : "")")
        }
        guard let r = c.parameters.withUnsafeBufferPointer({
            Evaluator.evaluate(model: c.model, parameters: $0.baseAddress!, tokens: tokens, window: window, streams: evalStreams)
        }) else { throw TrainingError.vocabulary("\(all ? "" : "the validation split of ")\(corpus.name) has fewer than 2 known characters") }
        let what = all ? "loss" : "validation loss"
        print(String(format: "%@ %.4f nats/char, %.4f bits/char over %d chars", what, r.natsPerCharacter, r.bitsPerCharacter, r.characters))
    }
}

/// One line on stderr that does not end the command.
func warn(_ text: String) {
    FileHandle.standardError.write(Data("recur: warning: \(text)\n".utf8))
}

/// Reads a checkpoint for sample/eval/summary, first repairing an interrupted write; what the
/// repair did goes to stderr (stdout carries the result).
func readCheckpoint(_ path: String) throws -> Checkpoint {
    let url = URL(fileURLWithPath: path)
    if let lines = try? Checkpoint.recover(url) {
        for line in lines { FileHandle.standardError.write(Data("recur: \(line)\n".utf8)) }
    }
    return try Checkpoint.read(from: url)
}
