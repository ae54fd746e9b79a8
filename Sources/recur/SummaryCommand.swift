import ArgumentParser
import Foundation
import Recurrent
import Training

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Keras-style table of layers, output shapes and parameter counts.")

    @OptionGroup var model: ModelFlags
    @Option(help: "Vocabulary size V (default: that of --data, or of the built-in corpus).")
    var vocab: Int?
    @Option(help: "Corpus whose vocabulary sets V.")
    var data: String?
    @Option(help: "Checkpoint directory: the table of its model (instead of --cell/--layers/--hidden/--vocab/--data).")
    var checkpoint: String?

    func validate() throws {
        if checkpoint != nil, model.cell != nil || model.layers != nil || model.hidden != nil || vocab != nil || data != nil {
            throw ValidationError("--checkpoint gives the model; --cell, --layers, --hidden, --vocab and --data do not go with it")
        }
        if let vocab, vocab < 1 { throw ValidationError("--vocab must be at least 1, got \(vocab)") }
        if model.resolvedLayers < 1 || model.resolvedHidden < 1 { throw ValidationError("--layers and --hidden must be at least 1") }
    }

    func run() throws {
        if let checkpoint {
            let c = try readCheckpoint(checkpoint)
            print(ModelSummary.table(c.model))
            if let t = c.training {
                print("Trained: step \(t.step) of \(t.config.steps); \(t.config.canonicalJSON())")
            }
            return
        }
        let (cell, layers, hidden) = (model.resolvedCell, model.resolvedLayers, model.resolvedHidden)
        let V = try vocab ?? (data.map { try Corpus.load(path: $0) } ?? Corpus.builtin()).vocabulary.count
        try MemoryBudget.require(MemoryBudget.parameterCount(cell: cell, vocabularySize: V, hiddenSize: hidden,
                                                             layers: layers).flatMap { MemoryBudget.multiply($0, 4) },
                                 for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden) --vocab \(V)")
        let config = ModelConfig(cell: cell, vocabularySize: V, hiddenSize: hidden, layerCount: layers)
        print(ModelSummary.table(config))
    }
}

/// Keras's `model.summary()` layout for the char model: one row per recurrent layer and
/// one for the head, counts from the parameter table (so they are the slab's counts).
enum ModelSummary {
    static func rows(_ config: ModelConfig) -> [(layer: String, shape: String, parameters: Int)] {
        let layout = ParameterLayout(config)
        let kind = ["rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"][config.cell.rawValue]!
        var rows: [(String, String, Int)] = []
        for l in 0..<config.layerCount {
            let count = layout.elements(of: layout.slices(ofLayer: l)).count
            rows.append(("\(config.cell.rawValue)_\(l + 1) (\(kind))", "(None, T, \(config.hiddenSize))", count))
        }
        let head = layout.elements(of: layout.headSlices).count
        rows.append(("head (Dense)", "(None, T, \(config.vocabularySize))", head))
        return rows
    }

    static func table(_ config: ModelConfig) -> String {
        let rows = rows(config)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
        let rule = String(repeating: "=", count: 64)
        var out = ["Model: \"\(config.cell.rawValue)\" (one-hot input over \(config.vocabularySize) symbols)",
                   String(repeating: "_", count: 64),
                   pad("Layer (type)", 28) + pad("Output Shape", 22) + "Param #", rule]
        for r in rows { out.append(pad(r.layer, 28) + pad(r.shape, 22) + "\(r.parameters)") }
        out.append(rule)
        out.append("Total params: \(rows.reduce(0) { $0 + $1.parameters })")
        out.append("Trainable params: \(rows.reduce(0) { $0 + $1.parameters })")
        return out.joined(separator: "\n")
    }
}
