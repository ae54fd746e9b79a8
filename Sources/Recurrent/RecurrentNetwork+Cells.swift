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
                let y = h + (b * P + t + 1) * H, d = dGates + (b * P + t) * H
                for j in 0..<H { d[j] = (dOut[j] + next[j]) * (1 - y[j] * y[j]) }
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
                let gi = g + (b * P + t) * GH          // i f g o, each H wide
                S.sigmoid(gi, count: 2 * H)
                S.tanh(gi + 2 * H, count: H)
                S.sigmoid(gi + 3 * H, count: H)
                let cPrev = c + (b * P + t) * H, cNext = cPrev + H
                let tcRow = tc + (b * T + t) * H, out = h + (b * P + t + 1) * H
                for j in 0..<H {
                    let cj = gi[H + j] * cPrev[j] + gi[j] * gi[2 * H + j]
                    cNext[j] = cj
                    tcRow[j] = cj
                }
                S.tanh(tcRow, count: H)
                for j in 0..<H { out[j] = gi[3 * H + j] * tcRow[j] }
            }
        }
    }

    func lstmBackward(layer l: Int, _ w: UnsafePointer<S>) {
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize, GH = 4 * H
        let c = cs[l], tc = tanhC[l], g = gates[l], whh = hiddenBackward[l]
        for t in stride(from: T - 1, through: 0, by: -1) {
            for b in 0..<n {
                let dOut = dH + (b * P + t + 1) * H, next = dHNext + b * H, cNext = dCNext + b * H
                let gi = g + (b * P + t) * GH, d = dGates + (b * P + t) * GH
                let tcRow = tc + (b * T + t) * H, cPrev = c + (b * P + t) * H
                for j in 0..<H {
                    let dh = dOut[j] + next[j]
                    let i = gi[j], f = gi[H + j], gg = gi[2 * H + j], o = gi[3 * H + j]
                    let tcj = tcRow[j]
                    let dc = cNext[j] + dh * o * (1 - tcj * tcj)
                    d[j] = dc * gg * i * (1 - i)
                    d[H + j] = dc * cPrev[j] * f * (1 - f)
                    d[2 * H + j] = dc * i * (1 - gg * gg)
                    d[3 * H + j] = dh * tcj * o * (1 - o)
                    cNext[j] = dc * f
                }
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
                let gi = g + (b * P + t) * GH          // r z n, each H wide
                let gh = stepH + b * GH
                let hnRow = hn + (b * T + t) * H
                let hPrev = h + (b * P + t) * H, out = hPrev + H
                for j in 0..<(2 * H) { gi[j] += gh[j] }
                S.sigmoid(gi, count: 2 * H)
                for j in 0..<H {
                    hnRow[j] = gh[2 * H + j]
                    gi[2 * H + j] += gi[j] * gh[2 * H + j]
                }
                S.tanh(gi + 2 * H, count: H)
                for j in 0..<H {
                    let z = gi[H + j]
                    out[j] = (1 - z) * gi[2 * H + j] + z * hPrev[j]
                }
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
                let gi = g + (b * P + t) * GH, hnRow = hn + (b * T + t) * H
                let hPrev = h + (b * P + t) * H
                let dx = dGates + (b * P + t) * GH, dh = dGh + (b * P + t) * GH
                for j in 0..<H {
                    let dht = dOut[j] + next[j]
                    let r = gi[j], z = gi[H + j], nn = gi[2 * H + j]
                    let dnPre = dht * (1 - z) * (1 - nn * nn)
                    let drPre = dnPre * hnRow[j] * r * (1 - r)
                    let dzPre = dht * (hPrev[j] - nn) * z * (1 - z)
                    dx[j] = drPre; dx[H + j] = dzPre; dx[2 * H + j] = dnPre
                    dh[j] = drPre; dh[H + j] = dzPre; dh[2 * H + j] = dnPre * r
                    next[j] = dht * z
                }
            }
            S.rowProduct(m: n, n: H, k: GH, a: dGh + t * GH, lda: P * GH, prepared: whh,
                         accumulate: true, c: dHNext, ldc: H)
        }
    }
}
