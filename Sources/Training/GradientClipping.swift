/// Clipping by the global L2 norm of the whole gradient slab, as `torch.nn.utils.clip_grad_norm_`.
/// (Element-wise clamping is a different thing and is not offered.)
public enum GradientClipping {
    /// ‖g‖₂ of the whole buffer, squares summed in Double. Eight Double lanes accumulate element
    /// i in lane i % 8 and are added in a fixed order, so the result depends only on the values
    /// (not on alignment or threads) and every process computes the same norm.
    public static func globalNorm(_ g: UnsafeBufferPointer<Float>) -> Double {
        squares(g).squareRoot()
    }

    /// Σ g² in Double, as described for `globalNorm`.
    static func squares(_ g: UnsafeBufferPointer<Float>) -> Double {
        let n = g.count
        guard n > 0 else { return 0 }
        let x = UnsafeRawPointer(g.baseAddress!)
        var lanes = SIMD8<Double>()
        var i = 0
        while i + 8 <= n {
            let v = SIMD8<Double>(x.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
            lanes += v * v
            i += 8
        }
        var tail = 0.0
        while i < n {
            let v = Double(g[i])
            tail += v * v
            i += 1
        }
        let sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        return sum + tail
    }

    /// Σ g² of each block (`blocks` are ranges of indices into `g`), each summed like
    /// `globalNorm` with the lanes counted from the block's start: a block's value depends only
    /// on its own values, wherever it is computed.
    public static func blockSquares(_ g: UnsafeBufferPointer<Float>, blocks: [Range<Int>]) -> [Double] {
        blocks.map { squares(UnsafeBufferPointer(rebasing: g[$0])) }
    }

    /// ‖g‖₂ from the blocks' sums of squares, added in block order (one fixed order for every
    /// split of the blocks over shards).
    public static func norm(blockSquares: [Double]) -> Double {
        var sum = 0.0
        for value in blockSquares { sum += value }
        return sum.squareRoot()
    }

    /// The factor PyTorch's rule scales a gradient of norm `norm` by: `maxNorm / (norm + 1e-6)`
    /// when that is below 1; nil when nothing is scaled (clipping off, small or non-finite norm).
    public static func coefficient(norm: Double, maxNorm: Float) -> Float? {
        guard maxNorm > 0, norm.isFinite else { return nil }
        let coefficient = Double(maxNorm) / (norm + 1e-6)
        return coefficient < 1 ? Float(coefficient) : nil
    }

    /// Scales `g` in place by `maxNorm / (norm + 1e-6)` when that is below 1 (PyTorch's rule).
    /// `maxNorm` 0 turns clipping off (the norm is still returned, for the log line). A non-finite
    /// norm is returned unscaled: the caller's NaN guard should stop training, not a zeroed step.
    @discardableResult
    public static func clip(_ g: UnsafeMutableBufferPointer<Float>, maxNorm: Float) -> (normBefore: Double, scaled: Bool) {
        precondition(maxNorm >= 0, "maxNorm must be >= 0 (0 = off), got \(maxNorm)")
        let norm = globalNorm(UnsafeBufferPointer(g))
        guard let c = coefficient(norm: norm, maxNorm: maxNorm) else { return (norm, false) }
        scale(g, by: c)
        return (norm, true)
    }

    static func scale(_ g: UnsafeMutableBufferPointer<Float>, by c: Float) {
        guard let x = g.baseAddress else { return }
        for i in 0..<g.count { x[i] = x[i] * c }
    }
}
