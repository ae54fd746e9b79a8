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
