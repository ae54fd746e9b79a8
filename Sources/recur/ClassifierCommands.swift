import ArgumentParser
import Foundation
import Recurrent
import Training

/// `recur predict`: labels lines of text with a classifier checkpoint.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Label lines of text with a classifier checkpoint (--task classify).",
        discussion: """
        Reads one text per line (from --data, a file or pipe, else standard input; lines end \
        in LF or CR LF, at most 4 MiB each) and prints for each line \
        `label<TAB>probability` of the most likely class, in input order, as it reads. Inputs \
        are cut to the checkpoint's --max-len; characters outside its vocabulary are dropped \
        (counted on stderr); a line left empty prints `-<TAB>-`.
        """)

    @Option(help: "Checkpoint directory of a classifier.")
    var checkpoint: String
    @Option(help: "Text file, one input per line (default: standard input).")
    var data: String?
    @Option(help: "Print this many most likely classes per line, best first.")
    var top = 1

    func validate() throws {
        if top < 1 { throw ValidationError("--top must be at least 1, got \(top)") }
    }

    /// Inputs are streamed: lines are read (`LineReader`, the line contract of every label
    /// file), scored and printed a batch at a time, so memory holds one batch whatever the
    /// input's size. A line's result does not depend on its batch (`ClassifierEvaluator`).
    func run() throws {
        let c = try readClassifier(checkpoint)
        let lines = try data.map { try LineReader(path: $0, flag: "--data") } ?? LineReader.standardInput()
        let maxLength = c.training?.config.resolvedMaxLength ?? TrainingConfig.defaultMaxLength
        var batch: [String] = [], batchBytes = 0, dropped = 0
        func flush() {
            let (examples, droppedHere) = LabelledExamples.unlabelled(lines: batch, vocabulary: c.vocabulary)
            dropped += droppedHere
            let probabilities = c.parameters.withUnsafeBufferPointer {
                ClassifierEvaluator.predict(model: c.model, parameters: $0.baseAddress!, examples: examples, maxLength: maxLength)
            }
            var out = ""
            for p in probabilities {
                guard let p else { out += "-\t-\n"; continue }
                let best = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }.prefix(top)
                out += best.map { String(format: "%@\t%.4f", c.labels[$0], Double(p[$0])) }.joined(separator: "\t") + "\n"
            }
            FileHandle.standardOutput.write(Data(out.utf8))
            batch.removeAll(keepingCapacity: true)
            batchBytes = 0
        }
        // A batch ends at `predictBatchLines` lines or `predictBatchBytes` of text, whichever
        // comes first: a few long lines must not hold a thousand lines' worth of memory.
        while let line = try lines.next() {
            batch.append(line)
            batchBytes += line.utf8.count
            if batch.count == Self.predictBatchLines || batchBytes >= Self.predictBatchBytes { flush() }
        }
        if !batch.isEmpty { flush() }
        if dropped > 0 { warn("dropped \(dropped) character(s) outside the checkpoint's vocabulary") }
    }

    static let predictBatchLines = 1024, predictBatchBytes = 16 << 20
}

/// A checkpoint that must be a classifier's.
func readClassifier(_ path: String) throws -> Checkpoint {
    let c = try readCheckpoint(path)
    guard c.model.labelCount != nil else {
        throw ValidationError("\(path) holds a language model, not a classifier (train one with --task classify); use recur sample or recur eval")
    }
    return c
}

/// `recur eval` of a classifier: loss, accuracy and per-class metrics of every example of a
/// labelled file (lines `label<TAB>text`).
func evaluateClassifier(_ c: Checkpoint, data: String) throws {
    let examples = try LabelledExamples.read(path: data, vocabulary: c.vocabulary, labels: c.labels)
    if examples.skippedUnknownLabels + examples.skippedEmpty + examples.skippedCharacters > 0 {
        warn("skipped \(examples.skippedUnknownLabels) example(s) of labels the model does not know and \(examples.skippedEmpty) left empty; dropped \(examples.skippedCharacters) character(s) outside the vocabulary")
    }
    let maxLength = c.training?.config.resolvedMaxLength ?? TrainingConfig.defaultMaxLength
    guard let r = c.parameters.withUnsafeBufferPointer({
        ClassifierEvaluator.evaluate(model: c.model, parameters: $0.baseAddress!, examples: examples, maxLength: maxLength, majorityLabel: nil)
    }), let metrics = r.classification else {
        throw TrainingError.vocabulary("\(data) has no example the model can score")
    }
    print(String(format: "loss %.4f nats/example, accuracy %.2f%% over %d examples", r.natsPerCharacter, 100 * metrics.accuracy, r.characters))
    print(metrics.table)
}
