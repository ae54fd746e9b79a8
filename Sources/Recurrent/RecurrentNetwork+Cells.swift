/// The time loops of the three cells, each forward next to its backward (the mirror image).
/// They run on one layer of a `RecurrentNetwork` workspace; shapes are those of its buffers.
extension RecurrentNetwork {
    func rnnForward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize
        let h = hs[l], g = gates[l], whh = hiddenForward[l]
        for t in 0..<T {
            S.rowProduct(m: n, n: H, k: H, a: h + t * H, lda: P * H, prepared: whh,
                         accumulate: true, c: g + t * H, ldc: P * H)
            for b in 0..<n {
                let out = h + (b * P + t + 1) * H
                out.update(from: g + (b * P + t) * H, count: H)
                S.tanh(out, count: H)
            }
        }
    }

    func rnnBackward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize
        let h = hs[l], whh = hiddenBackward[l]
        for t in stride(from: T - 1, through: 0, by: -1) {
            for b in 0..<n {
                let dOut = dH + (b * P + t + 1) * H, next = dHNext + b * H
                S.rnnRowBackward(output: h + (b * P + t + 1) * H, dOut: dOut, dNext: next, dGates: dGates + (b * P + t) * H, H: H)
            }
            S.rowProduct(m: n, n: H, k: H, a: dGates + t * H, lda: P * H, prepared: whh,
                         accumulate: false, c: dHNext, ldc: H)
        }
    }

    func lstmForward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize, GH = 4 * H
        let h = hs[l], c = cs[l], tc = tanhC[l], g = gates[l], whh = hiddenForward[l]
        for t in 0..<T {
            S.rowProduct(m: n, n: GH, k: H, a: h + t * H, lda: P * H, prepared: whh,
                         accumulate: true, c: g + t * GH, ldc: P * GH)
            for b in 0..<n {
                let cPrev = c + (b * P + t) * H
                S.lstmRowForward(gates: g + (b * P + t) * GH, cPrev: cPrev, c: cPrev + H, tanhC: tc + (b * T + t) * H,
                                 h: h + (b * P + t + 1) * H, H: H)
            }
        }
    }

    func lstmBackward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize, GH = 4 * H
        let c = cs[l], tc = tanhC[l], g = gates[l], whh = hiddenBackward[l]
        for t in stride(from: T - 1, through: 0, by: -1) {
            for b in 0..<n {
                let dOut = dH + (b * P + t + 1) * H, next = dHNext + b * H, cNext = dCNext + b * H
                S.lstmRowBackward(gates: g + (b * P + t) * GH, tanhC: tc + (b * T + t) * H, cPrev: c + (b * P + t) * H,
                                  dOut: dOut, dNext: next, dC: cNext, dGates: dGates + (b * P + t) * GH, H: H)
            }
            S.rowProduct(m: n, n: H, k: GH, a: dGates + t * GH, lda: P * GH, prepared: whh,
                         accumulate: false, c: dHNext, ldc: H)
        }
    }

    func gruForward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize, GH = 3 * H
        let h = hs[l], g = gates[l], hn = hiddenN[l], whh = hiddenForward[l]
        let bhh = w + offsets[l].hiddenBias!
        for t in 0..<T {
            for b in 0..<n { (stepH + b * GH).update(from: bhh, count: GH) }
            S.rowProduct(m: n, n: GH, k: H, a: h + t * H, lda: P * H, prepared: whh,
                         accumulate: true, c: stepH, ldc: GH)
            for b in 0..<n {
                let hPrev = h + (b * P + t) * H
                S.gruRowForward(gates: g + (b * P + t) * GH, hidden: stepH + b * GH, hiddenN: hn + (b * T + t) * H,
                                hPrev: hPrev, h: hPrev + H, H: H)
            }
        }
    }

    func gruBackward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize, GH = 3 * H
        let h = hs[l], g = gates[l], hn = hiddenN[l], whh = hiddenBackward[l]
        let dGh = dGatesH!
        for t in stride(from: T - 1, through: 0, by: -1) {
            for b in 0..<n {
                let dOut = dH + (b * P + t + 1) * H, next = dHNext + b * H
                S.gruRowBackward(gates: g + (b * P + t) * GH, hiddenN: hn + (b * T + t) * H, hPrev: h + (b * P + t) * H,
                                 dOut: dOut, dNext: next, dx: dGates + (b * P + t) * GH, dh: dGh + (b * P + t) * GH, H: H)
            }
            S.rowProduct(m: n, n: H, k: GH, a: dGh + t * GH, lda: P * GH, prepared: whh,
                         accumulate: true, c: dHNext, ldc: H)
        }
    }
}
