import CBLAS
#if canImport(Glibc)
import Glibc
#endif

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

    public static func sigmoid(_ x: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.sigmoid(x, count: count)
    }

    public static func tanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.tanh(x, count: count)
    }

    public static func exp(_ x: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.exp(x, count: count)
    }

    public static func logarithm(_ x: Double) -> Double { Glibc.log(x) }
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

    // Double is the reference path (gradient checks): exact libm, speed does not matter.
    public static func sigmoid(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = 1 / (1 + Glibc.exp(-x[i])) }
    }

    public static func tanh(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = Glibc.tanh(x[i]) }
    }

    public static func exp(_ x: UnsafeMutablePointer<Double>, count: Int) {
        for i in 0..<count { x[i] = Glibc.exp(x[i]) }
    }

    public static func logarithm(_ x: Double) -> Double { Glibc.log(x) }
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

    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}
