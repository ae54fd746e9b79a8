import Foundation
import Recurrent

/// The classifier's test oracle: one example at a time, one step at a time, per gate and per
/// element in Double, straight from the formulas (PyTorch semantics, zero initial state),
/// with no BLAS, no packing and no code shared with `SequenceClassifier`.
public enum NaiveClassifier {
    public struct Output {
        public var logits: [Double]
        public var loss: Double
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// `p` is a slab with `ParameterLayout(config)`; `input` the symbol ids of one example.
    public static func forward(config: ModelConfig, parameters p: [Double], input: [Int], label: Int) -> Output {
        let layout = ParameterLayout(config)
        let H = config.hiddenSize, V = config.vocabularySize
        func tensor(_ name: String) -> [Double] { Array(p[layout.slice(named: name)!.range]) }

        // Layer 0 reads one-hot vectors.
        var sequence: [[Double]] = input.map { v in (0..<V).map { $0 == v ? 1.0 : 0.0 } }
        var lastForward: [Double] = [], lastReverse: [Double] = []
        for l in 0..<config.layerCount {
            var directionOutputs: [[[Double]]] = []
            for d in 0..<config.directions {
                let suffix = d == 0 ? "" : "_reverse"
                let wih = tensor("rnn.weight_ih_l\(l)\(suffix)"), whh = tensor("rnn.weight_hh_l\(l)\(suffix)")
                let bih = tensor("rnn.bias_ih_l\(l)\(suffix)")
                let bhh = layout.slice(named: "rnn.bias_hh_l\(l)\(suffix)").map { Array(p[$0.range]) }
                    ?? [Double](repeating: 0, count: bih.count)
                let inWidth = sequence[0].count
                /// Row `row` of W (rows of `width`) times x.
                func product(_ w: [Double], _ row: Int, _ x: [Double]) -> Double {
                    var s = 0.0
                    for j in 0..<x.count { s += w[row * x.count + j] * x[j] }
                    return s
                }
                precondition(wih.count == config.cell.gateCount * H * inWidth)
                var h = [Double](repeating: 0, count: H), c = [Double](repeating: 0, count: H)
                var outs = [[Double]](repeating: [], count: sequence.count)
                let positions = d == 0 ? Array(0..<sequence.count) : Array((0..<sequence.count).reversed())
                for t in positions {
                    let x = sequence[t]
                    func xs(_ gate: Int, _ k: Int) -> Double { product(wih, gate * H + k, x) + bih[gate * H + k] }
                    func hs(_ gate: Int, _ k: Int) -> Double { product(whh, gate * H + k, h) + bhh[gate * H + k] }
                    var next = [Double](repeating: 0, count: H)
                    switch config.cell {
                    case .rnn:
                        for k in 0..<H { next[k] = Foundation.tanh(xs(0, k) + hs(0, k)) }
                    case .lstm:
                        for k in 0..<H {
                            let i = sigmoid(xs(0, k) + hs(0, k)), f = sigmoid(xs(1, k) + hs(1, k))
                            let g = Foundation.tanh(xs(2, k) + hs(2, k)), o = sigmoid(xs(3, k) + hs(3, k))
                            c[k] = f * c[k] + i * g
                            next[k] = o * Foundation.tanh(c[k])
                        }
                    case .gru:
                        for k in 0..<H {
                            let r = sigmoid(xs(0, k) + hs(0, k)), z = sigmoid(xs(1, k) + hs(1, k))
                            let n = Foundation.tanh(xs(2, k) + r * hs(2, k))
                            next[k] = (1 - z) * n + z * h[k]
                        }
                    }
                    h = next
                    outs[t] = h
                }
                directionOutputs.append(outs)
                if d == 0 { lastForward = h } else { lastReverse = h }   // reverse: after position 0
            }
            sequence = (0..<sequence.count).map { t in directionOutputs.flatMap { $0[t] } }
        }
        let feature: [Double]
        switch config.pooling {
        case .last: feature = config.bidirectional ? lastForward + lastReverse : lastForward
        case .mean:
            // The top layer's outputs (both directions) summed over positions, over the length.
            let sum = sequence.dropFirst().reduce(sequence[0]) { total, row in zip(total, row).map { $0 + $1 } }
            feature = sum.map { $0 / Double(sequence.count) }
        }
        let w = tensor("head.weight"), b = tensor("head.bias")
        let logits = (0..<config.outputCount).map { row in
            (0..<feature.count).reduce(b[row]) { $0 + w[row * feature.count + $1] * feature[$1] }
        }
        let m = logits.max()!
        let logSum = Foundation.log(logits.reduce(0) { $0 + Foundation.exp($1 - m) }) + m
        return Output(logits: logits, loss: logSum - logits[label])
    }
}
