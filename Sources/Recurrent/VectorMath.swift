/// Vectorised exp, sigmoid and tanh for Float over raw buffers, 16 lanes at a time
/// (one AVX-512 register; two AVX2 registers).
///
/// exp uses the Cephes scheme: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
/// polynomial, 2^n built in the exponent bits. Max relative error ≈ 2 ulp over the
/// clamped range [-87.3, 88.7]; below it the result flushes towards 0, above it saturates
/// at ≈ 3.4e38. sigmoid and tanh are built on it and are accurate to a few 1e-7 absolute.
public enum VectorMath {
    public typealias Lanes = SIMD16<Float>

    @inline(__always)
    static func exp(_ x: Lanes) -> Lanes {
        let log2e: Float = 1.44269504088896341
        let ln2hi: Float = 0.693359375
        let ln2lo: Float = -2.12194440e-4
        let magic: Float = 12582912.0  // 1.5·2^23: adding it rounds to an integer in the low bits
        // Clamp with masks: `clamped` and `pointwiseMin` go lane by lane through
        // NaN-aware scalar code and cost more than the whole polynomial.
        var xc = x
        xc.replace(with: -87.3, where: x .< -87.3)
        xc.replace(with: 88.7, where: x .> 88.7)
        let t = xc * log2e + magic
        let n = t - magic
        var r = xc - n * ln2hi
        r = r - n * ln2lo
        var p = Lanes(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let r2 = r * r
        let er = p * r2 + r + 1
        // 2^n: n sits in the low mantissa bits of t; shift it into the exponent field.
        let tBits = unsafeBitCast(t, to: SIMD16<Int32>.self)
        let magicBits = SIMD16<Int32>(repeating: Int32(bitPattern: magic.bitPattern))
        let scaleBits = (tBits &- magicBits &+ 127) &<< 23
        return er * unsafeBitCast(scaleBits, to: Lanes.self)
    }

    @inline(__always)
    static func sigmoid(_ x: Lanes) -> Lanes { 1 / (1 + exp(-x)) }

    @inline(__always)
    static func tanh(_ x: Lanes) -> Lanes {
        // tanh(x) = 2·sigmoid(2x) − 1; absolute error ≈ 1e-7, which is what training needs.
        2 / (1 + exp(-2 * x)) - 1
    }

    @inline(__always)
    static func apply(_ p: UnsafeMutablePointer<Float>, _ count: Int, _ f: (Lanes) -> Lanes) {
        var i = 0
        let raw = UnsafeMutableRawPointer(p)
        while i + 16 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: Lanes.self)
            raw.storeBytes(of: f(v), toByteOffset: i * 4, as: Lanes.self)
            i += 16
        }
        if i < count {
            var tail = Lanes(repeating: 0)
            for j in 0..<(count - i) { tail[j] = p[i + j] }
            let out = f(tail)
            for j in 0..<(count - i) { p[i + j] = out[j] }
        }
    }

    public static func exp(_ p: UnsafeMutablePointer<Float>, count: Int) { apply(p, count, exp) }
    public static func sigmoid(_ p: UnsafeMutablePointer<Float>, count: Int) { apply(p, count, sigmoid) }
    public static func tanh(_ p: UnsafeMutablePointer<Float>, count: Int) { apply(p, count, tanh) }
}
