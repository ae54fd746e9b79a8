import Recurrent

/// Starting a classifier from a trained language model (`recur train --task classify
/// --init-from LM_DIR`): the recurrent layers come from the language model, the head starts
/// fresh (its outputs are labels, not characters).
///
/// The language model's tensors are copied by PyTorch name into the classifier's forward
/// direction; a bidirectional classifier's reverse direction keeps its initialization (it reads
/// the text backwards, which the language model never did). `rnn.weight_ih_l0` (G·H, V) is
/// copied column by column through the characters: the classifier's vocabulary is its own
/// file's, so a character the language model never saw keeps its initialized column.
public enum LanguageModelTransfer {
    /// What was copied, for the log.
    public struct Report: Equatable, Sendable {
        public var tensors: Int
        public var scalars: Int
        /// Characters of the classifier's vocabulary the language model lacks.
        public var unseenCharacters: Int
    }

    /// Writes the language model's recurrent layers into `parameters` (laid out as `layout`).
    /// The models must share cell, hidden size and layer count; a bidirectional classifier of
    /// more than one layer is refused (its upper layers read 2H inputs, the language model's H).
    public static func copy(from source: Checkpoint, into parameters: inout [Float], layout: ParameterLayout,
                            vocabulary: Vocabulary, path: String) throws(TrainingError) -> Report {
        let from = source.model, to = layout.config
        precondition(from.labelCount == nil, "the source is a language model (TrainingSession starts from a classifier as it is)")
        guard from.cell == to.cell, from.hiddenSize == to.hiddenSize, from.layerCount == to.layerCount else {
            throw .checkpoint("\(path) is a language model of --cell \(from.cell.rawValue) --hidden \(from.hiddenSize) --layers \(from.layerCount); a classifier started from it keeps those")
        }
        guard !to.bidirectional || to.layerCount == 1 else {
            throw .checkpoint("a bidirectional classifier of \(to.layerCount) layers cannot start from a language model (its upper layers read both directions); use --layers 1 or no --bidirectional")
        }
        let sourceLayout = ParameterLayout(from)
        var report = Report(tensors: 0, scalars: 0, unseenCharacters: 0)
        for target in layout.slices where target.layer != nil && target.direction == 0 {
            guard let origin = sourceLayout.slice(named: target.name) else { continue }
            if target.role == .inputWeight && target.layer == 0 {
                // (G·H, V) row-major: column v of row r at r·V + v.
                let rows = target.shape[0], newV = target.shape[1], oldV = origin.shape[1]
                for (v, scalar) in vocabulary.scalars.enumerated() {
                    guard let old = source.vocabulary.id(of: scalar) else { report.unseenCharacters += 1; continue }
                    for r in 0..<rows {
                        parameters[target.offset + r * newV + v] = source.parameters[origin.offset + r * oldV + Int(old)]
                    }
                    report.scalars += rows
                }
            } else {
                precondition(origin.shape == target.shape, "same cell, hidden and layers give the same shapes")
                parameters[target.range] = source.parameters[origin.range]
                report.scalars += target.count
            }
            report.tensors += 1
        }
        return report
    }
}
