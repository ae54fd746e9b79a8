/// The time loops of the three cells over packed rows, each forward next to its backward, and
/// `backward` (head, BPTT of each layer and direction, weight gradients over packed rows).
/// Direction 0 runs positions 0..<steps, direction 1 runs them backwards; at position t the
/// active examples are the prefix 0..<batchSizes[t] of the sorted order, and the first
/// `previous(direction:step:).count` of them continue a state (the others start from zero,
/// so their recurrent product is skipped: W·0 adds nothing).
extension SequenceClassifier {
    /// The position of the k-th step of direction d.
    @inline(__always)
    func position(_ k: Int, direction d: Int) -> Int { d == 0 ? k : steps - 1 - k }

    func rnnForward(layer l: Int, direction d: Int) {
        let H = config.hiddenSize, DH = config.directions * H
        let ld = l * config.directions + d
        let out = outputs[l], g = gates[ld], whh = hiddenForward[ld]
        for k in 0..<steps {
            let t = position(k, direction: d), row0 = rowStart[t], (p0, mp) = previous(direction: d, step: t)
            if mp > 0 {
                S.rowProduct(m: mp, n: H, k: H, a: out + p0 * DH + d * H, lda: DH, prepared: whh,
                             accumulate: true, c: g + row0 * H, ldc: H)
            }
            for i in 0..<batchSizes[t] {
                let h = out + (row0 + i) * DH + d * H
                h.update(from: g + (row0 + i) * H, count: H)
                S.tanh(h, count: H)
            }
        }
    }

    func rnnBackward(layer l: Int, direction d: Int) {
        let H = config.hiddenSize, DH = config.directions * H
        let ld = l * config.directions + d
        let out = outputs[l], whh = hiddenBackward[ld], dG = dGates[d]
        for k in stride(from: steps - 1, through: 0, by: -1) {
            let t = position(k, direction: d), row0 = rowStart[t], (_, mp) = previous(direction: d, step: t)
            for i in 0..<batchSizes[t] {
                let r = row0 + i
                let dOut = dH + r * DH + d * H, next = dHNext + i * H
                S.rnnRowBackward(output: out + r * DH + d * H, dOut: dOut, dNext: next, dGates: dG + r * H, H: H)
            }
            if mp > 0 {
                S.rowProduct(m: mp, n: H, k: H, a: dG + row0 * H, lda: H, prepared: whh,
                             accumulate: false, c: dHNext, ldc: H)
            }
        }
    }

    func lstmForward(layer l: Int, direction d: Int) {
        let H = config.hiddenSize, DH = config.directions * H, GH = 4 * H
        let ld = l * config.directions + d
        let out = outputs[l], c = cs[ld], tc = tanhC[ld], g = gates[ld], whh = hiddenForward[ld]
        for k in 0..<steps {
            let t = position(k, direction: d), row0 = rowStart[t], (p0, mp) = previous(direction: d, step: t)
            if mp > 0 {
                S.rowProduct(m: mp, n: GH, k: H, a: out + p0 * DH + d * H, lda: DH, prepared: whh,
                             accumulate: true, c: g + row0 * GH, ldc: GH)
            }
            for i in 0..<batchSizes[t] {
                let r = row0 + i
                let cPrev: UnsafePointer<S> = i < mp ? UnsafePointer(c + (p0 + i) * H) : UnsafePointer(zeros)
                S.lstmRowForward(gates: g + r * GH, cPrev: cPrev, c: c + r * H, tanhC: tc + r * H, h: out + r * DH + d * H, H: H)
            }
        }
    }

    func lstmBackward(layer l: Int, direction d: Int) {
        let H = config.hiddenSize, DH = config.directions * H, GH = 4 * H
        let ld = l * config.directions + d
        let c = cs[ld], tc = tanhC[ld], g = gates[ld], whh = hiddenBackward[ld], dG = dGates[d]
        for k in stride(from: steps - 1, through: 0, by: -1) {
            let t = position(k, direction: d), row0 = rowStart[t], (p0, mp) = previous(direction: d, step: t)
            for i in 0..<batchSizes[t] {
                let r = row0 + i
                let dOut = dH + r * DH + d * H, next = dHNext + i * H, cNext = dCNext + i * H
                let cPrev: UnsafePointer<S> = i < mp ? UnsafePointer(c + (p0 + i) * H) : UnsafePointer(zeros)
                S.lstmRowBackward(gates: g + r * GH, tanhC: tc + r * H, cPrev: cPrev, dOut: dOut, dNext: next, dC: cNext,
                                  dGates: dG + r * GH, H: H)
            }
            if mp > 0 {
                S.rowProduct(m: mp, n: H, k: GH, a: dG + row0 * GH, lda: GH, prepared: whh,
                             accumulate: false, c: dHNext, ldc: H)
            }
        }
    }

    func gruForward(layer l: Int, direction d: Int, _ w: UnsafePointer<S>) {
        let H = config.hiddenSize, DH = config.directions * H, GH = 3 * H
        let ld = l * config.directions + d
        let out = outputs[l], g = gates[ld], hn = hiddenN[ld], whh = hiddenForward[ld]
        let bhh = w + offsets[ld].hiddenBias!
        for k in 0..<steps {
            let t = position(k, direction: d), row0 = rowStart[t], (p0, mp) = previous(direction: d, step: t)
            let m = batchSizes[t]
            for i in 0..<m { (stepH + i * GH).update(from: bhh, count: GH) }
            if mp > 0 {
                S.rowProduct(m: mp, n: GH, k: H, a: out + p0 * DH + d * H, lda: DH, prepared: whh,
                             accumulate: true, c: stepH, ldc: GH)
            }
            for i in 0..<m {
                let r = row0 + i
                let hPrev: UnsafePointer<S> = i < mp ? UnsafePointer(out + (p0 + i) * DH + d * H) : UnsafePointer(zeros)
                S.gruRowForward(gates: g + r * GH, hidden: stepH + i * GH, hiddenN: hn + r * H, hPrev: hPrev,
                                h: out + r * DH + d * H, H: H)
            }
        }
    }

    func gruBackward(layer l: Int, direction d: Int) {
        let H = config.hiddenSize, DH = config.directions * H, GH = 3 * H
        let ld = l * config.directions + d
        let out = outputs[l], g = gates[ld], hn = hiddenN[ld], whh = hiddenBackward[ld]
        let dX = dGates[d], dGh = dGatesH!
        for k in stride(from: steps - 1, through: 0, by: -1) {
            let t = position(k, direction: d), row0 = rowStart[t], (p0, mp) = previous(direction: d, step: t)
            for i in 0..<batchSizes[t] {
                let r = row0 + i
                let dOut = dH + r * DH + d * H, next = dHNext + i * H
                let hPrev: UnsafePointer<S> = i < mp ? UnsafePointer(out + (p0 + i) * DH + d * H) : UnsafePointer(zeros)
                S.gruRowBackward(gates: g + r * GH, hiddenN: hn + r * H, hPrev: hPrev, dOut: dOut, dNext: next,
                                 dx: dX + r * GH, dh: dGh + r * GH, H: H)
            }
            if mp > 0 {
                S.rowProduct(m: mp, n: H, k: GH, a: dGh + row0 * GH, lda: GH, prepared: whh,
                             accumulate: true, c: dHNext, ldc: H)
            }
        }
    }
}

extension SequenceClassifier {
    // MARK: Backward

    /// ADDS ∂(Σ exampleLoss of the last forward)/∂parameters into gradient (layout.count values).
    public func backward(parameters w: UnsafePointer<S>, gradient: UnsafeMutablePointer<S>) {
        let H = config.hiddenSize, L = config.layerCount, D = config.directions, DH = D * H
        let GH = config.cell.gateCount * H, C = config.outputCount, n = count
        for ld in 0..<(L * D) {
            S.prepare(hiddenBackward[ld], weight: w + offsets[ld].hiddenWeight, k: GH, n: H, transposed: false)
            if ld >= D { S.prepare(inputBackward[ld - D], weight: w + offsets[ld].inputWeight, k: GH, n: DH, transposed: false) }
        }

        // Head: d loss / d logits = p − onehot(label).
        for b in 0..<n { probabilityRows[b * C + Int(labels[b])] -= 1 }
        // dW_head (C, DH) += dLogitsᵀ (C, n) · features (n, DH).
        S.gemm(transA: true, m: C, n: DH, k: n, a: probabilityRows, lda: C,
               b: features, ldb: DH, accumulate: true, c: gradient + headWeight, ldc: DH)
        S.addColumnSums(of: probabilityRows, rows: n, width: C, into: gradient + headBias)
        // dFeatures (n, DH) = dLogits (n, C) · W_head (C, DH).
        S.gemm(transA: false, m: n, n: DH, k: C, a: probabilityRows, lda: C,
               b: w + headWeight, ldb: DH, accumulate: false, c: dFeatures, ldc: DH)
        dH.update(repeating: 0, count: rows * DH)
        for b in 0..<n {
            let i = rank[b], length = Int(lengths[b]), dFeature = dFeatures + b * DH
            switch config.pooling {
            case .last:
                (dH + (rowStart[length - 1] + i) * DH).update(from: dFeature, count: H)
                if D == 2 { (dH + i * DH + H).update(from: dFeature + H, count: H) }
            case .mean:
                // Every position of the example gets d feature / length.
                let scale = 1 / S(length)
                for t in 0..<length {
                    let row = dH + (rowStart[t] + i) * DH
                    for j in 0..<DH { row[j] = dFeature[j] * scale }
                }
            }
        }

        for l in stride(from: L - 1, through: 0, by: -1) {
            for d in 0..<D {
                dHNext.update(repeating: 0, count: n * H)
                dCNext.update(repeating: 0, count: n * H)
                switch config.cell {
                case .rnn: rnnBackward(layer: l, direction: d)
                case .lstm: lstmBackward(layer: l, direction: d)
                case .gru: gruBackward(layer: l, direction: d)
                }
                accumulateWeightGradients(layer: l, direction: d, gradient: gradient)
            }
            if l > 0 {
                // Gradient w.r.t. the layer's input = both directions' outputs of the layer below.
                for d in 0..<D {
                    S.rowProduct(m: rows, n: DH, k: GH, a: dGates[d], lda: GH, prepared: inputBackward[(l - 1) * D + d],
                                 accumulate: d > 0, c: dH, ldc: DH)
                }
            }
        }
    }

    /// W_hh, W_ih and bias gradients of one direction of layer l over the R packed rows.
    private func accumulateWeightGradients(layer l: Int, direction d: Int, gradient grad: UnsafeMutablePointer<S>) {
        let H = config.hiddenSize, V = config.vocabularySize, D = config.directions, DH = D * H
        let GH = config.cell.gateCount * H, T = maxLength
        let ld = l * D + d, o = offsets[ld], out = outputs[l]
        let dX = dGates[d], dRecurrent = dGatesH ?? dX

        // h before each row's step (zero rows at a start), then one GEMM over all rows.
        for t in 0..<steps {
            let row0 = rowStart[t], m = batchSizes[t], (p0, mp) = previous(direction: d, step: t)
            for i in 0..<mp { (previousH + (row0 + i) * H).update(from: out + (p0 + i) * DH + d * H, count: H) }
            if mp < m { (previousH + (row0 + mp) * H).update(repeating: 0, count: (m - mp) * H) }
        }
        // dW_hh (GH, H) += dGatesᵀ (GH, rows) · h_prev (rows, H) over all packed rows.
        S.gemm(transA: true, m: GH, n: H, k: rows, a: dRecurrent, lda: GH,
               b: previousH, ldb: H, accumulate: true, c: grad + o.hiddenWeight, ldc: H)
        S.addColumnSums(of: dX, rows: rows, width: GH, into: grad + o.inputBias)
        if let hiddenBias = o.hiddenBias {
            S.addColumnSums(of: dRecurrent, rows: rows, width: GH, into: grad + hiddenBias)
        }
        if l > 0 {
            // dW_ih (GH, DH) += dGatesᵀ (GH, rows) · x (rows, DH), x = both directions below.
            S.gemm(transA: true, m: GH, n: DH, k: rows, a: dX, lda: GH,
                   b: outputs[l - 1], ldb: DH, accumulate: true, c: grad + o.inputWeight, ldc: DH)
        } else {
            // One-hot input: scatter gate grads into rows of W_ihᵀ, then add transposed.
            dInputWeightT.update(repeating: 0, count: V * GH)
            for t in 0..<steps {
                let row0 = rowStart[t]
                for i in 0..<batchSizes[t] {
                    let dst = dInputWeightT + Int(inputs[order[i] * T + t]) * GH
                    let src = dX + (row0 + i) * GH
                    for j in 0..<GH { dst[j] += src[j] }
                }
            }
            S.addTransposed(dInputWeightT, rows: V, columns: GH, into: grad + o.inputWeight)
        }
    }

}
