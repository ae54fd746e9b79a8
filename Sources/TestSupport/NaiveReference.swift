import Foundation
import Recurrent

/// The test oracle: a per-gate, per-element forward pass in Double written straight from
/// docs/DESIGN.md's formulas, with no BLAS, no fused buffers and no shared code with the core.
public enum NaiveReference {
    /// Result of a window: summed cross-entropy (nats) and the final state per layer.
    public struct Output {
        public var lossSum: Double
        public var h: [[[Double]]]   // [layer][stream][unit]
        public var c: [[[Double]]]   // LSTM only, else empty
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// `p` is a slab with `ParameterLayout(config)`; inputs/targets are [stream][t];
    /// h0/c0 are [layer][stream][unit].
    public static func forward(config: ModelConfig, parameters p: [Double],
                               inputs: [[Int]], targets: [[Int]],
                               h0: [[[Double]]], c0: [[[Double]]]) -> Output {
        let layout = ParameterLayout(config)
        let H = config.hiddenSize, V = config.vocabularySize
        func tensor(_ name: String) -> ArraySlice<Double> { p[layout.slice(named: name)!.range] }
        func matrixRow(_ m: ArraySlice<Double>, row: Int, width: Int) -> [Double] {
            Array(m[(m.startIndex + row * width)..<(m.startIndex + (row + 1) * width)])
        }
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        /// y[k] = Σ_j W[gate·H + k, j] x[j] for one gate block.
        func gateProduct(_ w: ArraySlice<Double>, gate: Int, x: [Double]) -> [Double] {
            (0..<H).map { k in dot(matrixRow(w, row: gate * H + k, width: x.count), x) }
        }
        func bias(_ b: ArraySlice<Double>?, gate: Int) -> [Double] {
            guard let b else { return Array(repeating: 0, count: H) }
            return (0..<H).map { b[b.startIndex + gate * H + $0] }
        }

        var h = h0, c = c0
        var loss = 0.0
        for s in 0..<inputs.count {
            for t in 0..<inputs[s].count {
                var x = Array(repeating: 0.0, count: V)
                x[inputs[s][t]] = 1
                for l in 0..<config.layerCount {
                    let wih = tensor("rnn.weight_ih_l\(l)"), whh = tensor("rnn.weight_hh_l\(l)")
                    let bih = tensor("rnn.bias_ih_l\(l)")
                    let bhh = layout.slice(named: "rnn.bias_hh_l\(l)").map { p[$0.range] }
                    let hp = h[l][s]
                    func pre(_ gate: Int) -> [Double] {
                        let a = gateProduct(wih, gate: gate, x: x), b = gateProduct(whh, gate: gate, x: hp)
                        let bi = bias(bih, gate: gate), bh = bias(bhh, gate: gate)
                        return (0..<H).map { a[$0] + b[$0] + bi[$0] + bh[$0] }
                    }
                    switch config.cell {
                    case .rnn:
                        h[l][s] = pre(0).map { Foundation.tanh($0) }
                    case .lstm:
                        let i = pre(0).map(sigmoid), f = pre(1).map(sigmoid)
                        let g = pre(2).map { Foundation.tanh($0) }, o = pre(3).map(sigmoid)
                        let cn = (0..<H).map { f[$0] * c[l][s][$0] + i[$0] * g[$0] }
                        c[l][s] = cn
                        h[l][s] = (0..<H).map { o[$0] * Foundation.tanh(cn[$0]) }
                    case .gru:
                        let xr = gateProduct(wih, gate: 0, x: x), hr = gateProduct(whh, gate: 0, x: hp)
                        let xz = gateProduct(wih, gate: 1, x: x), hz = gateProduct(whh, gate: 1, x: hp)
                        let xn = gateProduct(wih, gate: 2, x: x), hn = gateProduct(whh, gate: 2, x: hp)
                        let bir = bias(bih, gate: 0), biz = bias(bih, gate: 1), bin = bias(bih, gate: 2)
                        let bhr = bias(bhh, gate: 0), bhz = bias(bhh, gate: 1), bhn = bias(bhh, gate: 2)
                        var next = [Double](repeating: 0, count: H)
                        for k in 0..<H {
                            let r: Double = sigmoid(xr[k] + bir[k] + hr[k] + bhr[k])
                            let z: Double = sigmoid(xz[k] + biz[k] + hz[k] + bhz[k])
                            let hiddenN: Double = hn[k] + bhn[k]
                            let n: Double = Foundation.tanh(xn[k] + bin[k] + r * hiddenN)
                            next[k] = (1 - z) * n + z * hp[k]
                        }
                        h[l][s] = next
                    }
                    x = h[l][s]
                }
                let hw = tensor("head.weight"), hb = tensor("head.bias")
                let logits = (0..<V).map { dot(matrixRow(hw, row: $0, width: H), x) + hb[hb.startIndex + $0] }
                let m = logits.max()!
                let logSum = Foundation.log(logits.reduce(0) { $0 + Foundation.exp($1 - m) }) + m
                loss += logSum - logits[targets[s][t]]
            }
        }
        return Output(lossSum: loss, h: h, c: config.cell == .lstm ? c : [])
    }
}
