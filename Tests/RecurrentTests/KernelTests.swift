import CKernels
import Foundation
import Recurrent
import TestSupport
import XCTest

/// The C kernels behind the Float core: every CPU path gives the same bits, a row's product
/// does not depend on how many rows share the call, and the activations are accurate.
final class KernelTests: XCTestCase {
    private func randomFloats(_ count: Int, seed: UInt64, scale: Double = 1) -> [Float] {
        var rng = FixtureRandom(seed: seed)
        return (0..<count).map { _ in Float(rng.uniform(scale)) }
    }

    /// C = A·Wᵀ for m rows via the packed kernel at `level`.
    private func product(level: Int32, a: [Float], m: Int, k: Int, w: [Float], n: Int, accumulate: [Float]? = nil) -> [Float] {
        var packed = [Float](repeating: .nan, count: recur_packed_count(Int32(k), Int32(n)))
        recur_pack_transposed(&packed, w, Int32(n), Int32(k), Int32(k))
        var c = accumulate ?? [Float](repeating: 0, count: m * n)
        recur_gemm_packed_level(level, Int32(m), Int32(n), Int32(k), a, Int32(k), packed, accumulate == nil ? 0 : 1, &c, Int32(n))
        return c
    }

    func testPackedProductMatchesDoubleReferenceAndIsIdenticalOnEveryKernel() {
        for (m, k, n) in [(1, 1, 1), (7, 13, 17), (8, 64, 32), (13, 256, 1024), (100, 33, 65)] {
            let a = randomFloats(m * k, seed: UInt64(m * 31 + k)), w = randomFloats(n * k, seed: UInt64(n * 7 + k))
            let start = randomFloats(m * n, seed: 99)
            let best = product(level: 2, a: a, m: m, k: k, w: w, n: n, accumulate: start)
            for level: Int32 in [1, 0] {
                XCTAssertEqual(product(level: level, a: a, m: m, k: k, w: w, n: n, accumulate: start), best,
                               "level \(level) differs for m=\(m) k=\(k) n=\(n)")
            }
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k { sum += Double(a[i * k + p]) * Double(w[j * k + p]) }
                    worst = max(worst, abs(Double(best[i * n + j]) - (Double(start[i * n + j]) + sum)) / (1 + abs(sum)))
                }
            }
            XCTAssertLessThan(worst, 1e-5, "m=\(m) k=\(k) n=\(n)")
        }
    }

    /// Every count of rows left after the blocks of 6 (AVX2) or 8 (AVX-512), each taking several
    /// panels at once, and panel counts that leave a panel over: the same bits at every level.
    func testEveryLeftoverRowCountAndPanelCountGivesTheSameBits() {
        let k = 37
        for m in 1...17 {
            for n in [5, 16, 33, 48, 65, 80] {
                let a = randomFloats(m * k, seed: UInt64(m)), w = randomFloats(n * k, seed: UInt64(n))
                let start = randomFloats(m * n, seed: 7)
                let portable = product(level: 0, a: a, m: m, k: k, w: w, n: n, accumulate: start)
                for level: Int32 in [1, 2] {
                    XCTAssertEqual(product(level: level, a: a, m: m, k: k, w: w, n: n, accumulate: start), portable,
                                   "level \(level) differs for m=\(m) n=\(n)")
                    XCTAssertEqual(product(level: level, a: a, m: m, k: k, w: w, n: n), product(level: 0, a: a, m: m, k: k, w: w, n: n),
                                   "level \(level) differs for m=\(m) n=\(n) without accumulate")
                }
            }
        }
    }

    /// Each row's result is the same whether it is computed alone, in a block of 8, or at
    /// any position of a bigger call: what lets threads split streams freely.
    func testRowResultsDoNotDependOnRowCountOrPosition() {
        let k = 96, n = 80, m = 37
        let a = randomFloats(m * k, seed: 1), w = randomFloats(n * k, seed: 2)
        let all = product(level: 2, a: a, m: m, k: k, w: w, n: n)
        for (start, count) in [(0, 1), (5, 1), (3, 8), (10, 27), (29, 8), (36, 1)] {
            let rows = Array(a[(start * k)..<((start + count) * k)])
            let part = product(level: 2, a: rows, m: count, k: k, w: w, n: n)
            XCTAssertEqual(part, Array(all[(start * n)..<((start + count) * n)]), "rows \(start)..<\(start + count)")
        }
    }

    // MARK: C += op(A)·B (weight gradients)

    /// The contract of recur_gemm_add written out: each element one fma chain along k
    /// ascending from C's value. Swift's `addingProduct` is a fused multiply-add.
    private func referenceGemmAdd(transA: Bool, m: Int, n: Int, k: Int, a: [Float], lda: Int,
                                  b: [Float], ldb: Int, c: inout [Float], ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var acc = c[i * ldc + j]
                for p in 0..<k {
                    acc = acc.addingProduct(transA ? a[p * lda + i] : a[i * lda + p], b[p * ldb + j])
                }
                c[i * ldc + j] = acc
            }
        }
    }

    private func gemmAdd(level: Int32, transA: Bool, m: Int, n: Int, k: Int, a: [Float], lda: Int,
                         b: [Float], ldb: Int, c: [Float], ldc: Int) -> [Float] {
        var c = c
        recur_gemm_add_level(level, transA ? 1 : 0, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), &c, Int32(ldc))
        return c
    }

    /// Every level gives exactly the reference's bits, including edge tiles (m, n not multiples
    /// of the tile), k longer than one k-block (≤ 320) and m, n longer than one block (96 rows, 512 columns),
    /// row strides wider than the rows, and the columns of C past n left alone.
    func testGemmAddIsTheFMAChainAtEveryLevel() {
        let available = recur_cpu_level()
        for (m, n, k, transA) in [(1, 1, 1, true), (7, 13, 5, true), (8, 32, 64, true), (13, 33, 300, true),
                                  (65, 256, 1040, true), (100, 300, 257, true), (200, 40, 520, true),
                                  (9, 70, 3, false), (37, 100, 600, false),
                                  (20, 530, 40, true)] {   // n past one block of B's columns at every level
            let lda = (transA ? m : k) + 3, ldb = n + 5, ldc = n + 2
            let a = randomFloats((transA ? k : m) * lda, seed: UInt64(m * 131 + k))
            let b = randomFloats(k * ldb, seed: UInt64(n * 17 + k))
            let start = randomFloats(m * ldc, seed: UInt64(m + n))
            var expected = start
            referenceGemmAdd(transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &expected, ldc: ldc)
            for level in Int32(0)...available {
                let got = gemmAdd(level: level, transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: start, ldc: ldc)
                XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern),
                               "level \(level), m=\(m) n=\(n) k=\(k) transA=\(transA)")
            }
        }
    }

    /// The chain starts from C: k steps in one call equal the first k₁ then the rest, so a
    /// product over rows 0..<k equals two calls over 0..<k₁ and k₁..<k (and blocking cannot
    /// change a bit). A plain sum of two separate products would round differently.
    func testGemmAddContinuesTheChainFromC() {
        let m = 24, n = 48, k = 700, k1 = 333
        let a = randomFloats(k * m, seed: 11), b = randomFloats(k * n, seed: 12), start = randomFloats(m * n, seed: 13)
        let level = recur_cpu_level()
        let whole = gemmAdd(level: level, transA: true, m: m, n: n, k: k, a: a, lda: m, b: b, ldb: n, c: start, ldc: n)
        let first = gemmAdd(level: level, transA: true, m: m, n: n, k: k1, a: a, lda: m, b: b, ldb: n, c: start, ldc: n)
        let both = gemmAdd(level: level, transA: true, m: m, n: n, k: k - k1, a: Array(a[(k1 * m)...]), lda: m,
                           b: Array(b[(k1 * n)...]), ldb: n, c: first, ldc: n)
        XCTAssertEqual(whole.map(\.bitPattern), both.map(\.bitPattern))
    }

    /// The Swift entry used by the backward passes: accumulate: false overwrites C (even NaN).
    func testFloatGemmWithoutAccumulateStartsFromZero() {
        let m = 5, n = 7, k = 9
        let a = randomFloats(m * k, seed: 21), b = randomFloats(k * n, seed: 22)
        var c = [Float](repeating: .nan, count: m * n)
        Float.gemm(transA: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, accumulate: false, c: &c, ldc: n)
        var expected = [Float](repeating: 0, count: m * n)
        referenceGemmAdd(transA: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &expected, ldc: n)
        XCTAssertEqual(c.map(\.bitPattern), expected.map(\.bitPattern))
    }

    /// Levels: the forced one is what the kernels report, and a level above the CPU's is refused.
    func testForcingALevelAboveTheCPUIsRefused() throws {
        XCTAssertEqual(KernelLevel.current, KernelLevel.cpu, "tests run at the CPU's level")
        XCTAssertEqual(KernelLevel(name: "avx2"), .avx2)
        XCTAssertNil(KernelLevel(name: "sse"))
        if KernelLevel.cpu != .avx512 {
            XCTAssertThrowsError(try KernelLevel.force(.avx512)) { error in
                XCTAssertEqual(error as? KernelLevelError, .unsupported(requested: .avx512, cpu: KernelLevel.cpu))
            }
        }
        XCTAssertEqual(recur_set_kernel_level(3), -1)
        XCTAssertEqual(recur_set_kernel_level(-1), -1)
    }

    func testActivationsAreAccurateAndIdenticalOnEveryKernel() {
        let inputs: [Float] = randomFloats(1000, seed: 5, scale: 30) + [0, -0.0, 1e-8, -1e-8, 87, -87, 100, -100, 1e-30]
        let reference: [(Double) -> Double] = [{ Foundation.exp($0) }, { 1 / (1 + Foundation.exp(-$0)) }, { Foundation.tanh($0) }]
        for function in 0..<3 {
            var outputs: [[Float]] = []
            for level: Int32 in [2, 1, 0] {
                var x = inputs
                recur_activation_level(level, Int32(function), &x, Int32(x.count))
                outputs.append(x)
            }
            XCTAssertEqual(outputs[0], outputs[1], "function \(function): AVX-512 vs AVX2")
            XCTAssertEqual(outputs[0], outputs[2], "function \(function): AVX-512 vs portable")
            for (x, y) in zip(inputs, outputs[0]) where abs(x) < 80 {
                let exact = reference[function](Double(x))
                let error = function == 0 ? abs(Double(y) - exact) / exact : abs(Double(y) - exact)
                XCTAssertLessThan(error, function == 0 ? 3e-7 : 3e-7, "function \(function) at \(x)")
            }
        }
        var nan: [Float] = [.nan, 1]
        recur_sigmoid(&nan, 2)
        XCTAssertTrue(nan[0].isNaN, "NaN must propagate so the divergence guard sees it")
    }
}
