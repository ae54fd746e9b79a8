import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// `--task classify` in the training layer: the data contract (lines label<TAB>text, labels,
/// split, skipped input), the batches of every step, and the byte-identical guarantees of
/// the language model kept by the classifier: any thread count, any split into worker
/// blocks, resume, and checkpoints that read back with their labels.
final class ClassificationTests: XCTestCase {
    typealias F = TrainingFixtures

    static func corpus(_ text: String, name: String = "labelled") -> Corpus { Corpus(text: text, name: name) }

    static func config(cell: CellType = .lstm, layers: Int = 1, hidden: Int = 8, batch: Int = 8, chunk: Int = 2,
                       steps: Int = 6, bidirectional: Bool = false, maxLength: Int? = nil) -> TrainingConfig {
        var c = TrainingConfig()
        c.task = .classify
        c.cell = cell
        c.layers = layers
        c.hidden = hidden
        c.streams = batch
        c.chunkStreams = chunk
        c.steps = steps
        c.bidirectional = bidirectional ? true : nil
        c.maxLength = maxLength
        return c
    }

    // MARK: Data

    func testLinesParseIntoSortedLabelsAndTokenSpans() throws {
        let corpus = Self.corpus("pos\tgood day\nneg\tbad\npos\tfine\tstill text\nZed\tz\n")
        let (labels, examples) = try LabelledExamples.parse(corpus)
        XCTAssertEqual(labels, ["Zed", "neg", "pos"], "sorted by code point: capitals first")
        XCTAssertEqual(examples.map(\.label), [2, 1, 2, 0])
        XCTAssertEqual(examples.map(\.count), [8, 3, 15, 1], "the text after the first tab, tabs after it included")
        XCTAssertEqual(corpus.vocabulary.decode(corpus.tokens[examples[2].start..<(examples[2].start + examples[2].count)]), "fine\tstill text")
    }

    func testBadLinesNameTheirLineNumber() {
        for (text, line, reason) in [("a\tx\nno tab here\n", 2, "no tab"), ("a\tx\n\tx\n", 2, "empty label"),
                                     ("a\tx\nb\tx\nc\t\n", 3, "empty text"), ("a\tx\n\nb\ty\n", 2, "no tab")] {
            XCTAssertThrowsError(try LabelledExamples.parse(Self.corpus(text))) { error in
                guard case CorpusError.badExample(_, let l, let r) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(l, line, text)
                XCTAssertTrue(r.hasPrefix(reason), "\(r) for \(text.debugDescription)")
            }
        }
    }

    /// The last floor(n·f) lines validate; their labels are those of the training lines.
    func testSplitKeepsTrainingLabelsAndSkipsUnknownOnes() throws {
        let text = (0..<8).map { "\($0 % 2 == 0 ? "x" : "y")\tline \($0)" }.joined(separator: "\n") + "\nz\tonly in validation\nx\tlast\n"
        let (train, validation) = try LabelledExamples.split(Self.corpus(text), validationFraction: 0.2)
        XCTAssertEqual(train.count, 8)
        XCTAssertEqual(train.labels, ["x", "y"])
        XCTAssertEqual(validation.count, 1)
        XCTAssertEqual(validation.skippedUnknownLabels, 1)
        XCTAssertEqual(train.majorityLabel, 0)
    }

    /// Another file read with a model's vocabulary: unknown characters dropped, unknown labels
    /// and emptied examples skipped, each counted.
    func testValidationFileSkipsWhatTheModelCannotRead() throws {
        let vocabulary = Vocabulary(of: "abc")
        let v = try LabelledExamples.read(text: "p\tabxc\nq\tzz\nr\tab\np\tcab\n", name: "val", vocabulary: vocabulary, labels: ["p", "q"])
        XCTAssertEqual(v.examples.map(\.count), [3, 3])
        XCTAssertEqual(v.skippedCharacters, 3)
        XCTAssertEqual(v.skippedEmpty, 1)
        XCTAssertEqual(v.skippedUnknownLabels, 1)
    }

    // MARK: Batches

    /// Each epoch is a permutation; windows of 16 batches are sorted longest first; two
    /// epochs differ; the same seed gives the same order.
    func testEpochOrdersArePermutationsSortedByLengthInWindows() throws {
        let lines = (0..<300).map { i in "l\(i % 3)\t" + String(repeating: "a", count: 1 + (i * 37) % 50) }
        let (train, _) = try LabelledExamples.split(Self.corpus(lines.joined(separator: "\n")), validationFraction: 0)
        let batches = ClassifierBatches(train: train, batch: 4, maxLength: 30, seed: 7)
        XCTAssertEqual(batches.stepsPerEpoch, 75)
        let first = batches.order(epoch: 0), second = batches.order(epoch: 1)
        XCTAssertEqual(first.sorted(), Array(0..<300))
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(first, ClassifierBatches(train: train, batch: 4, maxLength: 30, seed: 7).order(epoch: 0))
        let window = ClassifierBatches.sortWindow * 4
        for start in stride(from: 0, to: 300, by: window) {
            let lengths = first[start..<min(start + window, 300)].map { min(train.examples[$0].count, 30) }
            XCTAssertEqual(lengths, lengths.sorted(by: >), "window at \(start)")
        }
        XCTAssertEqual(batches.position(globalStep: 80).epoch, 1)
    }

    /// `--epochs` counts a classifier's epochs in batches of examples.
    func testEpochsOfAClassifierCountBatches() throws {
        let corpus = Corpus(text: BuiltinLabelled.text(count: 100), name: "builtin-100")
        let config = Self.config(batch: 8, chunk: 2)
        XCTAssertEqual(try config.steps(forEpochs: 3, corpus: corpus), 3 * (90 / 8))
    }

    // MARK: Exactness

    func builtinCorpus() -> Corpus { Corpus(text: BuiltinLabelled.text(count: 400), name: "builtin-400") }

    /// K = 1, 2, 4 threads give bit-identical weights and losses, unidirectional and
    /// bidirectional, 2 layers; and training moves the weights.
    func testThreadCountsGiveBitIdenticalClassifiers() throws {
        let corpus = builtinCorpus()
        for (cell, bidirectional) in [(CellType.lstm, false), (.gru, true), (.rnn, true)] {
            let config = Self.config(cell: cell, layers: 2, hidden: 6, steps: 5, bidirectional: bidirectional)
            var results: [([UInt32], [UInt64])] = []
            for threads in [1, 2, 4] {
                var options = RunOptions()
                options.threads = threads
                let session = try TrainingSession(config: config, corpus: corpus, options: options)
                XCTAssertEqual(session.model.bidirectional, bidirectional)
                let (_, losses) = try F.runSteps(session)
                results.append((F.bits(session.update.values), F.bits(losses)))
            }
            let plan = try RunPlan(config: config, corpus: corpus)
            XCTAssertNotEqual(results[0].0, F.bits(ParameterInitializer.initialize(plan.layout, seed: config.seed)), "\(cell): weights did not move")
            for r in results.dropFirst() {
                XCTAssertTrue(r.0 == results[0].0, "\(cell) bidirectional \(bidirectional): weights differ across threads")
                XCTAssertEqual(r.1, results[0].1, "\(cell): losses differ across threads")
            }
        }
    }

    /// Two engines over aligned blocks of the batch (two workers), combined through the
    /// reduction tree, give the single engine's gradient and loss bit for bit.
    func testWorkerBlocksCombineToTheWholeBatchGradient() throws {
        let plan = try RunPlan(config: Self.config(hidden: 6, batch: 8, chunk: 2, bidirectional: true), corpus: builtinCorpus())
        let parameters = ParameterInitializer.initialize(plan.layout, seed: 1)
        let state = RecurrentState<Float>(config: plan.model, streams: 8)
        let count = plan.layout.count
        parameters.withUnsafeBufferPointer { w in
            for step in [0, 3, plan.stepsPerEpoch + 1] {   // the last one in the second epoch
                let whole = plan.engine(block: 0..<8, threads: 1)
                let (wholeLoss, wholeGradient) = whole.computeGradient(parameters: w.baseAddress!, step: step, stepInEpoch: plan.position(globalStep: step).stepInEpoch,
                                                                       from: state, into: state, early: nil)
                let expected = Array(UnsafeBufferPointer(start: wholeGradient, count: count))
                let blocks = [plan.engine(block: 0..<4, threads: 2), plan.engine(block: 4..<8, threads: 1)]
                let parts = blocks.map { $0.computeGradient(parameters: w.baseAddress!, step: step, stepInEpoch: plan.position(globalStep: step).stepInEpoch,
                                                            from: state, into: state, early: nil) }
                let top = ReductionTree(leaves: [0..<2, 2..<4], over: 0..<4)
                top.sum(parts.map(\.gradient), count: count, threads: 1)
                XCTAssertEqual(F.bits(Array(UnsafeBufferPointer(start: parts[0].gradient, count: count))), F.bits(expected), "step \(step)")
                XCTAssertEqual(top.sum(parts.map(\.lossSum)).bitPattern, wholeLoss.bitPattern, "step \(step)")
                XCTAssertTrue(expected.contains { $0 != 0 })
                withExtendedLifetime((whole, blocks)) {}   // the engines own the slabs read above
            }
        }
    }

    /// 8 steps straight equal 4 + checkpoint + resume + 4 (crossing an epoch), and the
    /// checkpoint reads back as a classifier with its labels.
    func testResumeIsExactAndCheckpointsKeepTheLabels() throws {
        let corpus = Corpus(text: BuiltinLabelled.text(count: 60), name: "builtin-60")
        let config = Self.config(cell: .gru, hidden: 5, batch: 8, chunk: 4, steps: 8, bidirectional: true)
        let straight = try TrainingSession(config: config, corpus: corpus, options: RunOptions())
        XCTAssertEqual(straight.plan.stepsPerEpoch, 6, "fixture: 54 training examples, batch 8")
        try F.runSteps(straight)

        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("run")
        var first = config
        first.steps = 4
        _ = try F.run(try TrainingSession(config: first, corpus: corpus, options: options))
        let saved = try Checkpoint.read(from: directory.child("run"))
        XCTAssertEqual(saved.labels, BuiltinLabelled.labels)
        XCTAssertEqual(saved.model.labelCount, 4)
        XCTAssertTrue(saved.model.bidirectional)
        options.resume = true
        let resumed = try TrainingSession(config: config, corpus: corpus, options: options)
        XCTAssertEqual(resumed.step, 4)
        try F.runSteps(resumed)
        XCTAssertTrue(F.bits(resumed.update.values) == F.bits(straight.update.values), "resumed classifier differs")
    }

    /// A unidirectional LSTM learns the built-in rule (the first letter) well above the
    /// majority baseline, and the evaluation's metrics are consistent.
    func testBuiltinTaskIsLearnedAboveTheMajorityBaseline() throws {
        var config = Self.config(cell: .lstm, hidden: 32, batch: 32, chunk: 8, steps: 600)
        config.validationFraction = 0.1
        var options = RunOptions()
        options.threads = 2
        let session = try TrainingSession(config: config, corpus: Corpus.builtin(task: .classify), options: options)
        let (_, _, summary) = try F.run(session)
        let metrics = try XCTUnwrap(summary.validation?.classification)
        XCTAssertEqual(metrics.confusion.joined().reduce(0, +), 400)
        XCTAssertEqual(metrics.labels, BuiltinLabelled.labels)
        let baseline = try XCTUnwrap(metrics.majorityBaseline)
        XCTAssertLessThan(baseline, 0.35)
        XCTAssertGreaterThan(metrics.accuracy, baseline + 0.2, "accuracy \(metrics.accuracy) vs baseline \(baseline)")
        XCTAssertEqual(metrics.f1.count, 4)
    }
}
