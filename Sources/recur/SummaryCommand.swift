import ArgumentParser
import Foundation
import Recurrent
import Training

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Keras-style table of layers, output shapes and parameter counts.",
        usage: "recur summary [--checkpoint DIR | <model options>]")

    @OptionGroup var model: ModelFlags
    @Option(help: "Vocabulary size V (default: that of --data, or of the built-in corpus).")
    var vocab: Int?
    @Option(help: "Corpus whose vocabulary sets V.")
    var data: String?
    @Option(help: "Checkpoint directory: the table of its model (instead of --cell/--layers/--hidden/--vocab/--data).")
    var checkpoint: String?
    @Option(help: "A sequence classifier: a head of N classes on the last step (instead of the V-way language-model head).")
    var labels: Int?

    func validate() throws {
        if checkpoint != nil, model.cell != nil || model.layers != nil || model.hidden != nil || vocab != nil || data != nil
            || model.bidirectional || model.pool != nil || labels != nil {
            throw ValidationError("--checkpoint gives the model; --cell, --layers, --hidden, --vocab, --data, --bidirectional, --pool and --labels do not go with it")
        }
        if model.pool != nil && labels == nil { throw ValidationError("--pool goes with --labels (a classifier's head)") }
        if let labels, labels < 1 { throw ValidationError("--labels must be at least 1, got \(labels)") }
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
                                                             layers: layers).flatMap { MemoryBudget.multiply($0, model.bidirectional ? 8 : 4) },
                                 for: "--cell \(cell.rawValue) --layers \(layers) --hidden \(hidden) --vocab \(V)")
        let config = ModelConfig(cell: cell, vocabularySize: V, hiddenSize: hidden, layerCount: layers,
                                 bidirectional: model.bidirectional, labelCount: labels, pooling: model.pool ?? .last)
        print(ModelSummary.table(config))
    }
}

/// Keras's `model.summary()` layout: one row per recurrent layer and one for the head, counts
/// from the parameter table (so they are the slab's counts). The plain language model keeps
/// its one shape column; a bidirectional model or a classifier shows each recurrent layer's
/// output both as a sequence (`return_sequences=True`, what the layer above reads) and at the
/// last step (what a classifier's head reads from the top layer), `Bidirectional` layers as
/// Keras names them (their count is both directions').
enum ModelSummary {
    struct Row {
        var layer: String
        var shape: String
        var lastStep: String
        var parameters: Int
    }

    static func rows(_ config: ModelConfig) -> [Row] {
        let layout = ParameterLayout(config)
        let kind = ["rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"][config.cell.rawValue]!
        let width = config.layerOutputSize
        var rows: [Row] = []
        for l in 0..<config.layerCount {
            let count = layout.elements(of: layout.slices(ofLayer: l)).count
            let name = config.bidirectional ? "bidirectional_\(l + 1) (Bidirectional(\(kind)))" : "\(config.cell.rawValue)_\(l + 1) (\(kind))"
            rows.append(Row(layer: name, shape: "(None, T, \(width))", lastStep: "(None, \(width))", parameters: count))
        }
        if config.labelCount != nil && config.pooling == .mean {
            // The head reads the mean over the positions, Keras's GlobalAveragePooling1D.
            rows.append(Row(layer: "mean (GlobalAveragePooling1D)", shape: "", lastStep: "(None, \(width))", parameters: 0))
        }
        let head = layout.elements(of: layout.headSlices).count
        let headShape = config.labelCount.map { "(None, \($0))" } ?? "(None, T, \(config.vocabularySize))"
        rows.append(Row(layer: "head (Dense)", shape: config.labelCount == nil ? headShape : "", lastStep: config.labelCount == nil ? "" : headShape,
                        parameters: head))
        return rows
    }

    static func table(_ config: ModelConfig) -> String {
        let rows = rows(config)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
        let plain = !config.bidirectional && config.labelCount == nil
        let layerWidth = config.bidirectional ? 46 : 28
        let width = plain ? 64 : layerWidth + 46
        let rule = String(repeating: "=", count: width)
        var title = "Model: \"\(config.cell.rawValue)\" (one-hot input over \(config.vocabularySize) symbols"
        if config.bidirectional { title += ", bidirectional" }
        if let labels = config.labelCount { title += ", classifier of \(labels) labels" }
        if config.labelCount != nil && config.pooling == .mean { title += ", mean-pooled" }
        var out = [title + ")", String(repeating: "_", count: width)]
        if plain {
            out.append(pad("Layer (type)", 28) + pad("Output Shape", 22) + "Param #")
        } else {
            out.append(pad("Layer (type)", layerWidth) + pad("Output Shape", 16) + pad("Last Step", 16) + "Param #")
            out.append(pad("", layerWidth) + pad("(sequences)", 16) + "(no sequences)")
        }
        out.append(rule)
        for r in rows {
            if plain {
                out.append(pad(r.layer, 28) + pad(r.shape, 22) + "\(r.parameters)")
            } else {
                out.append(pad(r.layer, layerWidth) + pad(r.shape, 16) + pad(r.lastStep, 16) + "\(r.parameters)")
            }
        }
        out.append(rule)
        out.append("Total params: \(rows.reduce(0) { $0 + $1.parameters })")
        out.append("Trainable params: \(rows.reduce(0) { $0 + $1.parameters })")
        return out.joined(separator: "\n")
    }
}
