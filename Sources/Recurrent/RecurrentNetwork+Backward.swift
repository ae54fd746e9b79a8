/// Backward of a `RecurrentNetwork` workspace (truncated BPTT over its window), the mirror of
/// its forward: the head first, then each layer from the top down, weight gradients per chunk.
extension RecurrentNetwork {
    /// Backpropagates the summed loss of the last `forward` through the whole window.
    /// Weight gradients are *added* into each chunk's gradient slab, computed over that
    /// chunk's streams only, so that the sum over chunks does not depend on how streams were
    /// split among threads. Gradients w.r.t. the initial state go to `initialStateGradient`.
    public func backward(parameters w: UnsafePointer<S>, chunks: [GradientChunk<S>],
                         initialStateGradient: StateView<S>? = nil) {
        backwardHead(parameters: w, chunks: chunks)
        for l in stride(from: config.layerCount - 1, through: 0, by: -1) {
            backwardLayer(l, parameters: w, chunks: chunks, initialStateGradient: initialStateGradient)
        }
    }

    /// The first part of `backward`: the head's gradients and the gradient flowing into the
    /// top layer. Then call `backwardLayer` for L−1 down to 0; after layer l returns, the
    /// gradients of layer l and above are final (a caller may ship them while the rest runs).
    public func backwardHead(parameters w: UnsafePointer<S>, chunks: [GradientChunk<S>]) {
        let n = streamCount, T = window, P = T + 1
        let H = config.hiddenSize, V = config.vocabularySize, L = config.layerCount
        let GH = config.cell.gateCount * H
        for l in 0..<L {
            S.prepare(hiddenBackward[l], weight: w + offsets[l].hiddenWeight, k: GH, n: H, transposed: false)
            if l > 0 { S.prepare(inputBackward[l - 1], weight: w + offsets[l].inputWeight, k: GH, n: H, transposed: false) }
        }
        S.prepare(headBackward, weight: w + headWeight, k: V, n: H, transposed: false)

        // d loss / d logits = p − onehot(target) on real slots, 0 on the padding slot.
        for b in 0..<n {
            for t in 0..<T {
                logits[(b * P + t) * V + Int(targets[b * T + t])] -= 1
            }
            (logits + (b * P + T) * V).update(repeating: 0, count: V)
        }
        for chunk in chunks {
            let r0 = chunk.streams.lowerBound * P, rows = chunk.streams.count * P
            // dW_head (V, H) += dLogitsᵀ (V, rows) · h_top (rows, H) over the chunk's rows.
            S.gemm(transA: true, m: V, n: H, k: rows,
                   a: logits + r0 * V, lda: V, b: output(L - 1) + (r0 + 1) * H, ldb: H,
                   accumulate: true, c: chunk.gradient + headWeight, ldc: H)
            S.addColumnSums(of: logits + r0 * V, rows: rows, width: V, into: chunk.gradient + headBias)
        }
        S.rowProduct(m: n * P, n: H, k: V, a: logits, lda: V, prepared: headBackward,
                     accumulate: false, c: dH + H, ldc: H)
        maskGradient(layer: L - 1)
    }

    /// BPTT through layer l (after layer l+1, or the head for the top layer).
    public func backwardLayer(_ l: Int, parameters w: UnsafePointer<S>, chunks: [GradientChunk<S>],
                              initialStateGradient: StateView<S>? = nil) {
        let n = streamCount, P = window + 1, H = config.hiddenSize
        let GH = config.cell.gateCount * H
        dHNext.update(repeating: 0, count: n * H)
        dCNext.update(repeating: 0, count: n * H)
        switch config.cell {
        case .rnn: rnnBackward(layer: l, w)
        case .lstm: lstmBackward(layer: l, w)
        case .gru: gruBackward(layer: l, w)
        }
        if let d0 = initialStateGradient {
            for b in 0..<n {
                (d0.h + l * d0.layerStride + b * H).update(from: dHNext + b * H, count: H)
                if config.cell == .lstm, let dc = d0.c {
                    (dc + l * d0.layerStride + b * H).update(from: dCNext + b * H, count: H)
                }
            }
        }
        for chunk in chunks { accumulateWeightGradients(layer: l, chunk: chunk) }
        if l > 0 {
            // Gradient w.r.t. the layer's input = the outputs of the layer below.
            S.rowProduct(m: n * P, n: H, k: GH, a: dGates, lda: GH, prepared: inputBackward[l - 1],
                         accumulate: false, c: dH + H, ldc: H)
            maskGradient(layer: l - 1)
        }
    }

    /// W_hh, W_ih and bias gradients of layer l over one chunk's streams (rows of P slots).
    private func accumulateWeightGradients(layer l: Int, chunk: GradientChunk<S>) {
        let T = window, P = T + 1, H = config.hiddenSize, V = config.vocabularySize
        let GH = config.cell.gateCount * H
        let r0 = chunk.streams.lowerBound * P, rows = chunk.streams.count * P
        let o = offsets[l], grad = chunk.gradient
        let dRecurrent = dGatesH ?? dGates   // GRU keeps separate h-side gate grads

        // dW_hh (GH, H) += dGatesᵀ (GH, rows) · h_prev (rows, H); rows = chunk streams · P.
        S.gemm(transA: true, m: GH, n: H, k: rows,
               a: dRecurrent + r0 * GH, lda: GH, b: hs[l] + r0 * H, ldb: H,
               accumulate: true, c: grad + o.hiddenWeight, ldc: H)
        S.addColumnSums(of: dGates + r0 * GH, rows: rows, width: GH, into: grad + o.inputBias)
        if let hiddenBias = o.hiddenBias {
            S.addColumnSums(of: dRecurrent + r0 * GH, rows: rows, width: GH, into: grad + hiddenBias)
        }
        if l > 0 {
            // dW_ih (GH, H) += dGatesᵀ (GH, rows) · x (rows, H), x = the layer below's output.
            S.gemm(transA: true, m: GH, n: H, k: rows,
                   a: dGates + r0 * GH, lda: GH, b: output(l - 1) + (r0 + 1) * H, ldb: H,
                   accumulate: true, c: grad + o.inputWeight, ldc: H)
        } else {
            // One-hot input: scatter gate grads into rows of W_ih^T, then add transposed.
            dInputWeightT.update(repeating: 0, count: V * GH)
            for b in chunk.streams {
                for t in 0..<T {
                    let dst = dInputWeightT + Int(inputs[b * T + t]) * GH
                    let src = dGates + (b * P + t) * GH
                    for j in 0..<GH { dst[j] += src[j] }
                }
            }
            S.addTransposed(dInputWeightT, rows: V, columns: GH, into: grad + o.inputWeight)
        }
    }

}
