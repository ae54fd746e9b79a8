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
/// Everything the kernels need that is not plain arithmetic goes through here: the matrix
/// products and the vectorised transcendental functions (Float: CKernels; Double: BLAS, libm).
public protocol KernelScalar: BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
    /// Row-major `C (m×n) = op(A) · B (+ C when accumulate)`, op(A) (m×k) = Aᵀ when `transA`
    /// (A stored k×m), else A. `lda`, `ldb`, `ldc` are row strides in elements. For the products
    /// that sum over many rows: weight gradients (k = a chunk's T·streams rows) and the head.
    /// For Float (CKernels `recur_gemm_add`), each element is one FMA chain along k ascending
    /// from C's value (from 0 without accumulate): the same bits at every kernel level.
    static func gemm(transA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int, accumulate: Bool,
                     c: UnsafeMutablePointer<Self>, ldc: Int)
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

extension Float: KernelScalar {
    @inline(__always)
    public static func gemm(transA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, accumulate: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        if !accumulate {
            for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
        }
        recur_gemm_add(transA ? 1 : 0, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), c, Int32(ldc))
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
    public static func gemm(transA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int, accumulate: Bool,
                            c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb),
                    accumulate ? 1 : 0, c, Int32(ldc))
    }

    // Double is the reference path (gradient checks, tests only): OpenBLAS's dgemm and exact
    // libm; speed and bits across CPUs do not matter. The prepared weight is the (k × n) matrix itself.
    public static func preparedCount(k: Int, n: Int) -> Int { k * n }

    public static func prepare(_ prepared: UnsafeMutablePointer<Double>, weight: UnsafePointer<Double>, k: Int, n: Int, transposed: Bool) {
        for r in 0..<k {
            for j in 0..<n { prepared[r * n + j] = transposed ? weight[j * k + r] : weight[r * n + j] }
        }
    }

    public static func rowProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int,
                                  prepared: UnsafePointer<Double>, accumulate: Bool,
                                  c: UnsafeMutablePointer<Double>, ldc: Int) {
        gemm(transA: false, m: m, n: n, k: k, a: a, lda: lda, b: prepared, ldb: n,
             accumulate: accumulate, c: c, ldc: ldc)
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

/// The level of Recur's own Float kernels (CKernels): every Float product and activation runs
/// at one level per process, and all levels give identical bits.
public enum KernelLevel: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case portable = 0, avx2 = 1, avx512 = 2

    /// The names `RECUR_KERNEL_LEVEL` takes and logs print.
    public var description: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        }
    }

    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = level
    }

    /// The best level this CPU has (avx512f; avx2 and fma; else portable).
    public static var cpu: KernelLevel { KernelLevel(rawValue: recur_cpu_level())! }

    /// The level in use: the forced one, else `cpu`.
    public static var current: KernelLevel { KernelLevel(rawValue: recur_kernel_level())! }

    /// Forces `level` for the whole process. Call once before any kernel runs on other threads.
    public static func force(_ level: KernelLevel) throws {
        guard recur_set_kernel_level(level.rawValue) == 0 else { throw KernelLevelError.unsupported(requested: level, cpu: cpu) }
    }
}

public enum KernelLevelError: Error, CustomStringConvertible, Equatable {
    /// The CPU lacks the instructions of the requested level.
    case unsupported(requested: KernelLevel, cpu: KernelLevel)

    public var description: String {
        switch self {
        case .unsupported(let requested, let cpu):
            return "kernel level \(requested) needs instructions this CPU lacks (it has up to \(cpu))"
        }
    }
}

/// OpenBLAS, which only the Double reference path (tests) and the `recur bench --products`
/// comparison call: no Float product of training, evaluation or sampling goes through it.
public enum BLASInfo {
    /// The kernel set OpenBLAS picked (e.g. "Cooperlake", or "Haswell" when
    /// OPENBLAS_CORETYPE forces it).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Callers parallelise over streams, so each BLAS call must stay on its own thread.
    public static func useSingleThread() { openblas_set_num_threads(1) }

    /// Row-major `C (m×n) = op(A) · B (+ C when accumulate)` through `cblas_sgemm`, for
    /// comparing speed with the own kernels (`recur bench --products`).
    public static func sgemm(transA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int, accumulate: Bool,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb),
                    accumulate ? 1 : 0, c, Int32(ldc))
    }
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
