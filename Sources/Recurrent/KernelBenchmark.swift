import Foundation

/// Times forward + backward of one workspace on the calling thread, and plain sgemm of the
/// machine for scale. Used by `recur bench --kernel`.
public enum KernelBenchmark {
    public struct Result: Codable {
        public var cell: String, layers: Int, hidden: Int, vocabulary: Int, streams: Int, window: Int
        public var iterations: Int
        public var secondsMedian: Double
        public var tokensPerSecond: Double
        public var gflops: Double            // 6 FLOP per matmul weight per token
        public var forwardFraction: Double   // share of the step spent in forward
        public var sgemmGflops: Double       // square 512 sgemm on one thread
        public var blasCore: String
    }

    public static func run(config: ModelConfig, streams n: Int, window T: Int, iterations: Int) -> Result {
        let net = RecurrentNetwork<Float>(config: config, streams: n, window: T)
        let layout = net.layout
        var seed: UInt64 = 42
        func uniform() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (Float(seed >> 40) / Float(1 << 24) - 0.5) * 2 / Float(config.hiddenSize).squareRoot()
        }
        let weights = (0..<layout.count).map { _ in uniform() }
        let gradient = UnsafeMutablePointer<Float>.allocate(capacity: layout.count)
        gradient.initialize(repeating: 0, count: layout.count)
        defer { gradient.deallocate() }
        for i in 0..<(n * T) {
            net.inputs[i] = Int32(i % config.vocabularySize)
            net.targets[i] = Int32((i * 7 + 3) % config.vocabularySize)
        }
        let state = RecurrentState<Float>(config: config, streams: n)
        var totals: [Double] = [], forwards: [Double] = []
        weights.withUnsafeBufferPointer { w in
            for _ in 0..<(iterations + 2) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                net.forward(parameters: w.baseAddress!, initialState: state.view)
                let t1 = DispatchTime.now().uptimeNanoseconds
                net.backward(parameters: w.baseAddress!, chunks: [GradientChunk(streams: 0..<n, gradient: gradient)])
                let t2 = DispatchTime.now().uptimeNanoseconds
                totals.append(Double(t2 - t0) / 1e9)
                forwards.append(Double(t1 - t0) / 1e9)
            }
        }
        totals.removeFirst(2); forwards.removeFirst(2)   // warm-up
        let median = totals.sorted()[totals.count / 2]
        let tokens = Double(n * T)
        return Result(cell: config.cell.rawValue, layers: config.layerCount, hidden: config.hiddenSize,
                      vocabulary: config.vocabularySize, streams: n, window: T, iterations: iterations,
                      secondsMedian: median, tokensPerSecond: tokens / median,
                      gflops: tokens / median * 6 * Double(config.matmulWeightCount) / 1e9,
                      forwardFraction: forwards.sorted()[forwards.count / 2] / median,
                      sgemmGflops: sgemmGflops(size: 512), blasCore: BLASInfo.coreName)
    }

    /// GFLOP/s of a square sgemm of `size` on the calling thread (median of 5).
    public static func sgemmGflops(size m: Int) -> Double {
        let a = [Float](repeating: 0.5, count: m * m), b = [Float](repeating: 0.25, count: m * m)
        var c = [Float](repeating: 0, count: m * m)
        var times: [Double] = []
        for _ in 0..<6 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        Float.gemm(transA: false, transB: false, m: m, n: m, k: m, alpha: 1,
                                   a: ap.baseAddress!, lda: m, b: bp.baseAddress!, ldb: m,
                                   beta: 0, c: cp.baseAddress!, ldc: m)
                    }
                }
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.removeFirst()
        return 2 * Double(m * m * m) / times.sorted()[times.count / 2] / 1e9
    }
}
