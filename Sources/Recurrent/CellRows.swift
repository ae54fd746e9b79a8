/// The element-wise math of one row (one stream or example at one step) of each cell, forward
/// and its backward, shared by `RecurrentNetwork` (streams × window) and `SequenceClassifier`
/// (packed rows): the products around it differ, the cell does not. H units per row; gate
/// rows are G·H wide in PyTorch order (LSTM i f g o, GRU r z n). Inlined, so each caller's
/// bits are those of the loops written in place.
extension KernelScalar {
    /// RNN backward: d = (dOut + dNext) ⊙ (1 − y²), y = tanh of the step.
    @inline(__always)
    static func rnnRowBackward(output y: UnsafePointer<Self>, dOut: UnsafePointer<Self>, dNext: UnsafePointer<Self>,
                               dGates d: UnsafeMutablePointer<Self>, H: Int) {
        for j in 0..<H { d[j] = (dOut[j] + dNext[j]) * (1 - y[j] * y[j]) }
    }

    /// LSTM forward: activates the pre-activations `gates` in place, then c = f⊙c' + i⊙g,
    /// tanh(c) and h = o⊙tanh(c).
    @inline(__always)
    static func lstmRowForward(gates gi: UnsafeMutablePointer<Self>, cPrev: UnsafePointer<Self>, c cNext: UnsafeMutablePointer<Self>,
                               tanhC tcRow: UnsafeMutablePointer<Self>, h: UnsafeMutablePointer<Self>, H: Int) {
        sigmoid(gi, count: 2 * H)
        tanh(gi + 2 * H, count: H)
        sigmoid(gi + 3 * H, count: H)
        for j in 0..<H {
            let cj = gi[H + j] * cPrev[j] + gi[j] * gi[2 * H + j]
            cNext[j] = cj
            tcRow[j] = cj
        }
        tanh(tcRow, count: H)
        for j in 0..<H { h[j] = gi[3 * H + j] * tcRow[j] }
    }

    /// LSTM backward: pre-activation gradients `d` from the gradient reaching h (dOut + dNext)
    /// and the cell gradient `dC` from the step after, which becomes the one for the step before.
    @inline(__always)
    static func lstmRowBackward(gates gi: UnsafePointer<Self>, tanhC tcRow: UnsafePointer<Self>, cPrev: UnsafePointer<Self>,
                                dOut: UnsafePointer<Self>, dNext: UnsafePointer<Self>, dC cNext: UnsafeMutablePointer<Self>,
                                dGates d: UnsafeMutablePointer<Self>, H: Int) {
        for j in 0..<H {
            let dh = dOut[j] + dNext[j]
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

    /// GRU forward, after the products: `gates` holds the x-side pre-activations (bias
    /// included) and `hidden` the h-side product plus b_hh; keeps W_hn·h' + b_hn in `hiddenN`.
    @inline(__always)
    static func gruRowForward(gates gi: UnsafeMutablePointer<Self>, hidden gh: UnsafePointer<Self>, hiddenN hnRow: UnsafeMutablePointer<Self>,
                              hPrev: UnsafePointer<Self>, h: UnsafeMutablePointer<Self>, H: Int) {
        for j in 0..<(2 * H) { gi[j] += gh[j] }
        sigmoid(gi, count: 2 * H)
        for j in 0..<H {
            hnRow[j] = gh[2 * H + j]
            gi[2 * H + j] += gi[j] * gh[2 * H + j]
        }
        tanh(gi + 2 * H, count: H)
        for j in 0..<H {
            let z = gi[H + j]
            h[j] = (1 - z) * gi[2 * H + j] + z * hPrev[j]
        }
    }

    /// GRU backward: x-side (`dx`) and h-side (`dh`) pre-activation gradients; `dNext` (the
    /// gradient reaching h from the step after) becomes its z-path share for the step before,
    /// to which the caller adds the h-side product.
    @inline(__always)
    static func gruRowBackward(gates gi: UnsafePointer<Self>, hiddenN hnRow: UnsafePointer<Self>, hPrev: UnsafePointer<Self>,
                               dOut: UnsafePointer<Self>, dNext next: UnsafeMutablePointer<Self>,
                               dx: UnsafeMutablePointer<Self>, dh: UnsafeMutablePointer<Self>, H: Int) {
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
}
