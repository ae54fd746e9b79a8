import CBLAS
import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// libm by file-scope names: inside `KernelScalar` the static `exp`/`tanh` shadow them.
private func libmExp(_ x: Double) -> Double { exp(x) }
private func libmTanh(_ x: Double) -> Double { tanh(x) }
private func libmLog(_ x: Double) -> Double { log(x) }

/// The element type of the math core: Float for training, Double for tight gradient checks.
/// Everything the kernels need that is not plain arithmetic goes through here: the BLAS
/// product and the vectorised transcendental functions.
public protocol KernelScalar: BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
    /// Row-major `C (m×n) = alpha · op(A) · op(B) + beta · C`, op = transpose when asked.
    /// `lda`, `ldb`, `ldc` are row strides in elements (≥ the stored row length).
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// Scalars needed to hold a weight prepared for `rowProduct` with inner size k and n outputs.
    static func preparedCount(k: Int, n: Int) -> Int
    /// Prepares a weight for repeated row-wise products: stored (n × k) (out × in, product
    /// A·Wᵀ) when `transposed`, else (k × n) (product A·W).
    static func prepare(_ prepared: UnsafeMutablePointer<Self>, weight: UnsafePointer<Self>, k: Int, n: Int, transposed: Bool)
    /// `C (m×n) = A (m×k) · prepared (+ C when accumulate)`. For Float each row's result is
    /// independent of m and of the row's position (see recur_kernels.h): rows may be split
    /// among threads in any way without changing a bit.
    static func rowProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Self>, lda: Int,
                           prepared: UnsafePointer<Self>, accumulate: Bool,
                           c: UnsafeMutablePointer<Self>, ldc: Int)
    /// In place over `count` values.
    static func sigmoid(_ x: UnsafeMutablePointer<Self>, count: Int)
    static func tanh(_ x: UnsafeMutablePointer<Self>, count: Int)
    static func exp(_ x: UnsafeMutablePointer<Self>, count: Int)
    static func logarithm(_ x: Double) -> Double
}

@inline(__always)
private func blasTranspose(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: KernelScalar {
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, blasTranspose(transA), blasTranspose(transB),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    public static func preparedCount(k: Int, n: Int) -> Int { recur_packed_count(Int32(k), Int32(n)) }

    public static func prepare(_ prepared: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, k: Int, n: Int, transposed: Bool) {
        if transposed {
            recur_pack_transposed(prepared, weight, Int32(n), Int32(k), Int32(k))
        } else {
            recur_pack(prepared, weight, Int32(k), Int32(n), Int32(n))
        }
    }

    @inline(__always)
    public static func rowProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                  prepared: UnsafePointer<Float>, accumulate: Bool,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) {
        recur_gemm_packed(Int32(m), Int32(n), Int32(k), a, Int32(lda), prepared, accumulate ? 1 : 0, c, Int32(ldc))
    }

    // Vectorised in CKernels (AVX-512 / AVX2 / portable, identical results).
    public static func sigmoid(_ x: UnsafeMutablePointer<Float>, count: Int) { recur_sigmoid(x, Int32(count)) }
    public static func tanh(_ x: UnsafeMutablePointer<Float>, count: Int) { recur_tanh(x, Int32(count)) }
    public static func exp(_ x: UnsafeMutablePointer<Float>, count: Int) { recur_exp(x, Int32(count)) }

    public static func logarithm(_ x: Double) -> Double { libmLog(x) }
}

extension Double: KernelScalar {
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, blasTranspose(transA), blasTranspose(transB),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    // Double is the reference path (gradient checks): plain BLAS and exact libm, speed does
    // not matter. The prepared weight is the (k × n) matrix itself.
    public static func preparedCount(k: Int, n: Int) -> Int { k * n }

    public static func prepare(_ prepared: UnsafeMutablePointer<Double>, weight: UnsafePointer<Double>, k: Int, n: Int, transposed: Bool) {
        for r in 0..<k {
            for j in 0..<n { prepared[r * n + j] = transposed ? weight[j * k + r] : weight[r * n + j] }
        }
    }

    public static func rowProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int,
                                  prepared: UnsafePointer<Double>, accumulate: Bool,
                                  c: UnsafeMutablePointer<Double>, ldc: Int) {
        gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: prepared, ldb: n,
             beta: accumulate ? 1 : 0, c: c, ldc: ldc)
    }

    public static func sigmoid(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = 1 / (1 + libmExp(-x[i])) }
    }

    public static func tanh(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = libmTanh(x[i]) }
    }

    public static func exp(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = libmExp(x[i]) }
    }

    public static func logarithm(_ x: Double) -> Double { libmLog(x) }
}

/// OpenBLAS facts for logs and benchmark records.
public enum BLASInfo {
    /// The kernel set OpenBLAS picked (e.g. "Cooperlake", or "Haswell" when
    /// OPENBLAS_CORETYPE forces it).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Callers parallelise over streams, so each sgemm call must stay on its own thread.
    public static func useSingleThread() { openblas_set_num_threads(1) }

}

/// Slab arithmetic shared by the backward passes of `RecurrentNetwork` and `SequenceClassifier`
/// (plain loops in a fixed order, so the bits do not depend on the caller).
extension KernelScalar {
    /// out[j] += Σ_rows m[row, j] over (rows, width) row-major `m`, rows summed in order: the
    /// bias gradients of a block of rows.
    @inline(__always)
    static func addColumnSums(of m: UnsafePointer<Self>, rows: Int, width: Int, into out: UnsafeMutablePointer<Self>) {
        for r in 0..<rows {
            let row = m + r * width
            for j in 0..<width { out[j] += row[j] }
        }
    }

    /// out += sourceᵀ: `source` is (rows, columns), `out` (columns, rows), both row-major; the
    /// layer-0 input-weight gradient gathered per symbol (V, G·H) added into W_ih's (G·H, V).
    @inline(__always)
    static func addTransposed(_ source: UnsafePointer<Self>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Self>) {
        for c in 0..<columns {
            for r in 0..<rows { out[c * rows + r] += source[r * columns + c] }
        }
    }
}
