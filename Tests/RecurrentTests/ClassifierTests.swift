import Foundation
import Recurrent
import TestSupport
import XCTest

/// SequenceClassifier: parameter table against Keras and PyTorch, forward against the naive
/// oracle, gradient check, exact independence of an example from its batch, Float vs Double.
final class ClassifierTests: XCTestCase {
    /// Every cell × L = 1, 2 × unidirectional and bidirectional, reading the final h; and
    /// every cell mean-pooled, unidirectional L = 1 and bidirectional L = 2.
    static let configs: [ModelConfig] = CellType.allCases.flatMap { cell in
        [1, 2].flatMap { layers in
            [false, true].map { bi in
                ModelConfig(cell: cell, vocabularySize: 5, hiddenSize: 3, layerCount: layers, bidirectional: bi, labelCount: 3)
            }
        }
    } + CellType.allCases.flatMap { cell in
        [(1, false), (2, true)].map { layers, bi in
            ModelConfig(cell: cell, vocabularySize: 5, hiddenSize: 3, layerCount: layers, bidirectional: bi, labelCount: 3, pooling: .mean)
        }
    }

    struct Run<S: KernelScalar> {
        var logits: [[S]]
        var losses: [Double]
        var total: Double
        var gradient: [S]
    }

    /// One forward (and backward) of `inputs` in a fresh workspace. Slots beyond each length
    /// and unused examples are filled with `junk`-seeded symbols, which must never matter.
    static func run<S: KernelScalar>(_ config: ModelConfig, _ parameters: [S], inputs: [[Int]], labels: [Int],
                                     capacity: Int? = nil, maxLength: Int? = nil, junk: UInt64 = 0,
                                     backward: Bool = true) -> Run<S> {
        let n = capacity ?? inputs.count, T = maxLength ?? inputs.map(\.count).max()!
        let net = SequenceClassifier<S>(config: config, capacity: n, maxLength: T)
        var rng = FixtureRandom(seed: junk)
        for i in 0..<(n * T) { net.inputs[i] = Int32(rng.index(config.vocabularySize)) }
        for b in 0..<n { net.lengths[b] = Int32(1 + rng.index(T)); net.labels[b] = Int32(rng.index(config.outputCount)) }
        for (b, x) in inputs.enumerated() {
            net.lengths[b] = Int32(x.count)
            net.labels[b] = Int32(labels[b])
            for (t, v) in x.enumerated() { net.inputs[b * T + t] = Int32(v) }
        }
        var gradient = [S](repeating: 0, count: net.layout.count)
        let total = parameters.withUnsafeBufferPointer { w -> Double in
            let total = net.forward(parameters: w.baseAddress!, count: inputs.count)
            if backward { net.backward(parameters: w.baseAddress!, gradient: &gradient) }
            return total
        }
        // Logits stay valid after backward.
        return Run(logits: inputs.indices.map { Array(net.logits(example: $0)) },
                   losses: inputs.indices.map { net.exampleLoss[$0] }, total: total, gradient: gradient)
    }

    static func problem(_ config: ModelConfig, lengths: [Int], seed: UInt64, scale: Double = 0.5)
        -> (parameters: [Double], inputs: [[Int]], labels: [Int]) {
        var rng = FixtureRandom(seed: seed)
        let parameters = (0..<ParameterLayout(config).count).map { _ in rng.uniform(scale) }
        let inputs = lengths.map { len in (0..<len).map { _ in rng.index(config.vocabularySize) } }
        let labels = lengths.map { _ in rng.index(config.outputCount) }
        return (parameters, inputs, labels)
    }

    static func name(_ c: ModelConfig) -> String {
        "\(c.cell) L=\(c.layerCount)\(c.bidirectional ? " bidirectional" : "")\(c.pooling == .mean ? " mean-pooled" : "")"
    }

    // MARK: Parameter table

    /// Keras's counts for one recurrent layer on 10 inputs with 3 units:
    /// SimpleRNN units·(units + input + 1) = 3·(3+10+1) = 42; LSTM 4·that = 168;
    /// GRU (reset_after=True, two biases) 3·(units·(units + input) + 2·units) = 3·(39+6) = 135;
    /// `Bidirectional(...)` doubles each (84, 336, 270).
    func testRecurrentLayerCountsMatchKeras() {
        let expected: [CellType: Int] = [.rnn: 42, .lstm: 168, .gru: 135]
        for cell in CellType.allCases {
            for bi in [false, true] {
                for labels in [nil, 4] as [Int?] {
                    let layout = ParameterLayout(ModelConfig(cell: cell, vocabularySize: 10, hiddenSize: 3, layerCount: 1,
                                                             bidirectional: bi, labelCount: labels))
                    XCTAssertEqual(layout.elements(of: layout.slices(ofLayer: 0)).count, expected[cell]! * (bi ? 2 : 1), "\(cell) \(bi)")
                    // Head: Dense(O) on 3·directions features.
                    let O = labels ?? 10
                    XCTAssertEqual(layout.elements(of: layout.headSlices).count, O * 3 * (bi ? 2 : 1) + O)
                }
            }
        }
    }

    /// nn.LSTM(10, 3, num_layers=2, bidirectional=True).state_dict() order and shapes
    /// (bias_hh dropped: one bias per gate), then the head.
    func testBidirectionalLSTMTableFollowsPyTorch() {
        let layout = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 10, hiddenSize: 3, layerCount: 2,
                                                 bidirectional: true, labelCount: 4))
        let expected: [(String, [Int])] = [
            ("rnn.weight_ih_l0", [12, 10]), ("rnn.weight_hh_l0", [12, 3]), ("rnn.bias_ih_l0", [12]),
            ("rnn.weight_ih_l0_reverse", [12, 10]), ("rnn.weight_hh_l0_reverse", [12, 3]), ("rnn.bias_ih_l0_reverse", [12]),
            ("rnn.weight_ih_l1", [12, 6]), ("rnn.weight_hh_l1", [12, 3]), ("rnn.bias_ih_l1", [12]),
            ("rnn.weight_ih_l1_reverse", [12, 6]), ("rnn.weight_hh_l1_reverse", [12, 3]), ("rnn.bias_ih_l1_reverse", [12]),
            ("head.weight", [4, 6]), ("head.bias", [4]),
        ]
        XCTAssertEqual(layout.slices.map(\.name), expected.map(\.0))
        XCTAssertEqual(layout.slices.map(\.shape), expected.map(\.1))
        XCTAssertEqual(layout.slices.map(\.direction), [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0])
        XCTAssertEqual(layout.count, 2 * (120 + 36 + 12) + 2 * (72 + 36 + 12) + 24 + 4)
    }

    // MARK: Forward and gradients in Double

    func testForwardMatchesNaiveClassifierInDouble() {
        for config in Self.configs {
            let p = Self.problem(config, lengths: [4, 1, 6, 3], seed: 7)
            let core: Run<Double> = Self.run(config, p.parameters, inputs: p.inputs, labels: p.labels,
                                             capacity: 5, maxLength: 7, junk: 3, backward: false)
            var total = 0.0
            for b in p.inputs.indices {
                let naive = NaiveClassifier.forward(config: config, parameters: p.parameters, input: p.inputs[b], label: p.labels[b])
                XCTAssertLessThan(CoreRunner.relativeError(core.logits[b], naive.logits), 1e-12, "\(Self.name(config)) example \(b)")
                XCTAssertEqual(core.losses[b], naive.loss, accuracy: 1e-12 * naive.loss, "\(Self.name(config)) example \(b)")
                total += naive.loss
            }
            XCTAssertEqual(core.total, total, accuracy: 1e-12 * total)
        }
    }

    /// Central differences on every scalar of every tensor; per-tensor relative error < 1e-6.
    func testGradientCheckEveryTensor() {
        let epsilon = 1e-5
        for config in Self.configs {
            let p = Self.problem(config, lengths: [3, 1, 5, 2], seed: 13)
            let analytic: Run<Double> = Self.run(config, p.parameters, inputs: p.inputs, labels: p.labels)
            func loss(_ w: [Double]) -> Double {
                Self.run(config, w, inputs: p.inputs, labels: p.labels, backward: false).total
            }
            for slice in ParameterLayout(config).slices {
                var numeric: [Double] = []
                for i in slice.range {
                    var plus = p.parameters, minus = p.parameters
                    plus[i] += epsilon
                    minus[i] -= epsilon
                    numeric.append((loss(plus) - loss(minus)) / (2 * epsilon))
                }
                XCTAssertGreaterThan(numeric.map(abs).max()!, 1e-4, "\(Self.name(config)) \(slice.name) has a gradient")
                let error = CoreRunner.relativeError(Array(analytic.gradient[slice.range]), numeric)
                XCTAssertLessThan(error, 1e-6, "\(Self.name(config)) \(slice.name)")
            }
        }
    }

    func testBatchGradientIsSumOfSingleExampleGradientsInDouble() {
        for config in Self.configs {
            let p = Self.problem(config, lengths: [2, 6, 1, 4], seed: 21)
            let batch: Run<Double> = Self.run(config, p.parameters, inputs: p.inputs, labels: p.labels, junk: 5)
            var sum = [Double](repeating: 0, count: batch.gradient.count)
            for b in p.inputs.indices {
                let single: Run<Double> = Self.run(config, p.parameters, inputs: [p.inputs[b]], labels: [p.labels[b]],
                                                   capacity: 3, maxLength: 8, junk: UInt64(b + 9))
                for i in sum.indices { sum[i] += single.gradient[i] }
            }
            XCTAssertLessThan(CoreRunner.relativeError(batch.gradient, sum), 1e-12, Self.name(config))
        }
    }

    // MARK: Float exactness

    /// Bit patterns, so that −0 vs 0 or NaNs cannot hide a difference.
    static func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    /// An example's logits and loss are the same bits alone, at another position, and among
    /// longer and shorter examples (with different junk beyond every length); sizes that
    /// exercise the kernels' vector tails.
    func testFloatExampleIsBitIdenticalAloneAndInAnyBatch() {
        for cell in CellType.allCases {
            for (layers, bi, pooling) in [(1, false, Pooling.last), (2, true, .last), (2, true, .mean)] {
                let config = ModelConfig(cell: cell, vocabularySize: 11, hiddenSize: 19, layerCount: layers,
                                         bidirectional: bi, labelCount: 5, pooling: pooling)
                let p = Self.problem(config, lengths: [7, 12, 1, 3, 7, 9, 2], seed: 31, scale: 0.3)
                let w = p.parameters.map { Float($0) }
                let x = p.inputs[0], label = p.labels[0]
                let alone: Run<Float> = Self.run(config, w, inputs: [x], labels: [label], backward: false)
                let others = Array(p.inputs[1...]), otherLabels = Array(p.labels[1...])
                for position in [0, 2, 6] {
                    var inputs = others, labels = otherLabels
                    inputs.insert(x, at: position)
                    labels.insert(label, at: position)
                    let batch: Run<Float> = Self.run(config, w, inputs: inputs, labels: labels, capacity: 9, maxLength: 14,
                                                     junk: UInt64(position + 40), backward: position != 2)
                    XCTAssertEqual(Self.bits(batch.logits[position]), Self.bits(alone.logits[0]), "\(Self.name(config)) at \(position)")
                    XCTAssertEqual(batch.losses[position].bitPattern, alone.losses[0].bitPattern)
                }
                // Only shorter examples around it, and a smaller batch.
                let small: Run<Float> = Self.run(config, w, inputs: [p.inputs[2], x, p.inputs[6]], labels: [0, label, 1], junk: 77)
                XCTAssertEqual(Self.bits(small.logits[1]), Self.bits(alone.logits[0]), Self.name(config))
            }
        }
    }

    /// Same examples in the same order → the same bits of loss, logits and gradient, also
    /// when the workspace is reused and when the prepared weights are reused.
    func testFloatDeterministicAndReusable() {
        for cell in CellType.allCases {
            let config = ModelConfig(cell: cell, vocabularySize: 9, hiddenSize: 17, layerCount: 2, bidirectional: true, labelCount: 4)
            let p = Self.problem(config, lengths: [5, 2, 8, 1, 5], seed: 41, scale: 0.3)
            let w = p.parameters.map { Float($0) }
            let first: Run<Float> = Self.run(config, w, inputs: p.inputs, labels: p.labels)
            let again: Run<Float> = Self.run(config, w, inputs: p.inputs, labels: p.labels, capacity: 6, maxLength: 10, junk: 8)
            XCTAssertEqual(Self.bits(first.gradient), Self.bits(again.gradient), "\(cell)")
            XCTAssertEqual(first.total.bitPattern, again.total.bitPattern)

            let net = SequenceClassifier<Float>(config: config, capacity: 5, maxLength: 8)
            for (b, x) in p.inputs.enumerated() {
                net.lengths[b] = Int32(x.count)
                net.labels[b] = Int32(p.labels[b])
                for (t, v) in x.enumerated() { net.inputs[b * 8 + t] = Int32(v) }
            }
            var g1 = [Float](repeating: 0, count: w.count), g2 = g1
            w.withUnsafeBufferPointer { wp in
                let w0 = wp.baseAddress!
                XCTAssertEqual(net.forward(parameters: w0, count: 5).bitPattern, first.total.bitPattern)
                net.backward(parameters: w0, gradient: &g1)
                XCTAssertEqual(net.forward(parameters: w0, count: 5, weightsUnchanged: true).bitPattern, first.total.bitPattern)
                net.backward(parameters: w0, gradient: &g2)
                // Fewer examples in the same workspace: the first two are unchanged.
                net.forward(parameters: w0, count: 2, weightsUnchanged: true)
            }
            XCTAssertEqual(Self.bits(g1), Self.bits(first.gradient))
            XCTAssertEqual(Self.bits(g2), Self.bits(first.gradient))
            XCTAssertEqual(Self.bits(Array(net.logits(example: 1))), Self.bits(first.logits[1]))
            // Probabilities are the softmax of the logits.
            let logits = first.logits[1].map(Double.init), m = logits.max()!
            let z = logits.reduce(0) { $0 + exp($1 - m) }
            for (j, q) in net.probabilities(example: 1).enumerated() {
                XCTAssertEqual(Double(q), exp(logits[j] - m) / z, accuracy: 1e-6)
            }
        }
    }

    func testFloatForwardAndGradientMatchDouble() {
        for config in Self.configs {
            let p = Self.problem(config, lengths: [6, 1, 4, 6], seed: 51)
            let double: Run<Double> = Self.run(config, p.parameters, inputs: p.inputs, labels: p.labels)
            let single: Run<Float> = Self.run(config, p.parameters.map { Float($0) }, inputs: p.inputs, labels: p.labels)
            XCTAssertEqual(single.total, double.total, accuracy: 1e-4 * double.total, Self.name(config))
            XCTAssertLessThan(CoreRunner.relativeError(single.logits.flatMap { $0 }.map(Double.init), double.logits.flatMap { $0 }), 1e-4)
            XCTAssertLessThan(CoreRunner.relativeError(single.gradient.map(Double.init), double.gradient), 1e-4, Self.name(config))
        }
    }
}
