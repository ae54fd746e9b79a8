import Recurrent

/// How well a classifier labels a set of examples: accuracy, the majority-class baseline,
/// per-class precision, recall and F1, and the confusion matrix (rows: true class,
/// columns: predicted class). A class never predicted has precision 0; never present, recall 0.
public struct ClassificationMetrics: Equatable, Sendable, Encodable {
    public var labels: [String]
    /// (classes, classes) counts: confusion[true][predicted].
    public var confusion: [[Int]]
    public var accuracy: Double
    /// The accuracy of always answering the most frequent training label; nil when unknown.
    public var majorityBaseline: Double?
    public var precision: [Double]
    public var recall: [Double]
    public var f1: [Double]

    public init(labels: [String], confusion: [[Int]], majorityLabel: Int?) {
        self.labels = labels
        self.confusion = confusion
        let total = confusion.joined().reduce(0, +)
        let correct = confusion.indices.reduce(0) { $0 + confusion[$1][$1] }
        accuracy = total == 0 ? 0 : Double(correct) / Double(total)
        majorityBaseline = majorityLabel.map { total == 0 ? 0 : Double(confusion[$0].reduce(0, +)) / Double(total) }
        let k = confusion.count
        precision = (0..<k).map { c in
            let predicted = (0..<k).reduce(0) { $0 + confusion[$1][c] }
            return predicted == 0 ? 0 : Double(confusion[c][c]) / Double(predicted)
        }
        recall = (0..<k).map { c in
            let present = confusion[c].reduce(0, +)
            return present == 0 ? 0 : Double(confusion[c][c]) / Double(present)
        }
        f1 = zip(precision, recall).map { p, r in p + r == 0 ? 0 : 2 * p * r / (p + r) }
    }

    /// A few lines for the terminal: accuracy, then precision/recall/F1 and the row of the
    /// confusion matrix of each class.
    /// One row per class, numbered: `N name`, precision, recall, F1, then its row of the
    /// confusion matrix under column headers 0, 1, … (the predicted class's number).
    public var table: String {
        let names = labels.enumerated().map { "\($0.offset) \($0.element)" }
        let width = max(5, names.map(\.count).max() ?? 5)
        let cell = max(String(labels.count - 1).count, String(confusion.joined().max() ?? 0).count) + 1
        func pad(_ s: String) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
        func right(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        let metrics = pad("class") + "  " + ["precision", "recall", "f1"].map { right($0, 9) }.joined(separator: " ")
        var lines = [metrics + "  confusion: true class by row, predicted class by column",
                     String(repeating: " ", count: metrics.count + 1) + labels.indices.map { right(String($0), cell) }.joined()]
        for (c, name) in names.enumerated() {
            let row = confusion[c].map { right(String($0), cell) }.joined()
            lines.append(pad(name) + "  " + [precision[c], recall[c], f1[c]].map { fixed($0, 9) }.joined(separator: " ") + " " + row)
        }
        return lines.joined(separator: "\n")
    }

    private func fixed(_ x: Double, _ width: Int) -> String {
        let s = String(Int((x * 1000).rounded())).leftPadded(to: 4, with: "0")
        let text = s.dropLast(3) + "." + s.suffix(3)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

private extension String {
    func leftPadded(to n: Int, with c: Character) -> String { String(repeating: c, count: max(0, n - count)) + self }
}

/// Scores a classifier on labelled examples, or predicts unlabelled ones, in batches of
/// `batch` on one thread. An example's result does not depend on its batch
/// (`SequenceClassifier`), so the batches are taken in length order for speed, and the
/// losses are summed in example order.
public enum ClassifierEvaluator {
    public static let batch = 64

    /// Mean cross-entropy per example (in `natsPerCharacter`; `characters` = examples) and
    /// the metrics; nil without examples. `majorityLabel`: the most frequent training label.
    public static func evaluate(model: ModelConfig, parameters: UnsafePointer<Float>, examples: LabelledExamples,
                                maxLength: Int, majorityLabel: Int?) -> Evaluator.Result? {
        guard let labelCount = model.labelCount, examples.count > 0 else { return nil }
        var losses = [Double](repeating: 0, count: examples.count)
        var confusion = Array(repeating: Array(repeating: 0, count: labelCount), count: labelCount)
        run(model: model, parameters: parameters, examples: examples, maxLength: maxLength) { i, net, row in
            losses[i] = net.exampleLoss[row]
            let p = net.probabilities(example: row)
            let predicted = p.indices.max { p[$0] < p[$1] }!
            confusion[Int(examples.examples[i].label)][predicted] += 1
        }
        var result = Evaluator.Result(natsPerCharacter: losses.reduce(0, +) / Double(examples.count), characters: examples.count)
        result.classification = ClassificationMetrics(labels: examples.labels, confusion: confusion, majorityLabel: majorityLabel)
        return result
    }

    /// The class probabilities of every example (examples of no characters get none).
    public static func predict(model: ModelConfig, parameters: UnsafePointer<Float>, examples: LabelledExamples,
                               maxLength: Int) -> [[Float]?] {
        var out = [[Float]?](repeating: nil, count: examples.count)
        run(model: model, parameters: parameters, examples: examples, maxLength: maxLength) { i, net, row in
            out[i] = Array(net.probabilities(example: row))
        }
        return out
    }

    /// Forward of every non-empty example, `visit(example, workspace, row)` after its batch.
    private static func run(model: ModelConfig, parameters: UnsafePointer<Float>, examples: LabelledExamples, maxLength: Int,
                            visit: (Int, SequenceClassifier<Float>, Int) -> Void) {
        let order = examples.examples.indices.filter { examples.examples[$0].count > 0 }
            .sorted { examples.examples[$0].count > examples.examples[$1].count }
        let net = SequenceClassifier<Float>(config: model, capacity: min(batch, max(order.count, 1)), maxLength: maxLength)
        var first = true
        for start in stride(from: 0, to: order.count, by: batch) {
            let part = order[start..<min(start + batch, order.count)]
            for (row, i) in part.enumerated() {
                net.lengths[row] = Int32(examples.copyInput(i, maxLength: maxLength, into: net.inputs + row * maxLength))
                net.labels[row] = examples.examples[i].label
            }
            net.forward(parameters: parameters, count: part.count, weightsUnchanged: !first)
            first = false
            for (row, i) in part.enumerated() { visit(i, net, row) }
        }
    }
}
