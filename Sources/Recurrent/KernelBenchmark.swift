import Foundation

/// Times forward + backward of one workspace on the calling thread, with the own kernels' square
/// product for scale (`recur bench --kernel`), and each product shape of a model, own kernel
/// against OpenBLAS's `cblas_sgemm` (`recur bench --products`).
public enum KernelBenchmark {
    public struct Result: Codable {
        public var cell: String, layers: Int, hidden: Int, vocabulary: Int, streams: Int, window: Int
        public var iterations: Int
        public var secondsMedian: Double
        public var tokensPerSecond: Double
        public var gflops: Double            // 6 FLOP per matmul weight per token
        public var forwardFraction: Double   // share of the step spent in forward
        public var gemmGflops: Double        // square 512 own-kernel product on one thread
        public var kernelLevel: String
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
        let gradient = UnsafeMutableRawPointer.allocate(byteCount: layout.count * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: layout.count)   // aligned as ChunkedGradient's slabs
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
        let median = totals.median!
        let tokens = Double(n * T)
        return Result(cell: config.cell.rawValue, layers: config.layerCount, hidden: config.hiddenSize,
                      vocabulary: config.vocabularySize, streams: n, window: T, iterations: iterations,
                      secondsMedian: median, tokensPerSecond: tokens / median,
                      gflops: tokens / median * 6 * Double(config.matmulWeightCount) / 1e9,
                      forwardFraction: forwards.median! / median,
                      gemmGflops: gemmGflops(size: 512), kernelLevel: KernelLevel.current.description)
    }

    /// GFLOP/s of the own kernels' square product C (m×m) += A·B on the calling thread (median of 5).
    public static func gemmGflops(size m: Int) -> Double {
        let shape = ProductShape(name: "square", transA: false, m: m, n: m, k: m)
        return shape.gflops(median(of: 5) { shape.time(own: true) })
    }

    /// One product of the Float path: C (m×n) += op(A)·B, op(A) = Aᵀ (A stored k×m) when transA.
    public struct ProductShape: Codable, Sendable {
        public var name: String
        public var transA: Bool
        public var m: Int, n: Int, k: Int

        func gflops(_ seconds: Double) -> Double { 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9 }

        /// Seconds of one call, own kernel or cblas_sgemm, on fresh operands of this shape.
        func time(own: Bool, repeats: Int = 1) -> Double {
            var seed: UInt64 = 7
            func uniform() -> Float {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return Float(seed >> 40) / Float(1 << 24) - 0.5
            }
            let a = (0..<(m * k)).map { _ in uniform() }, b = (0..<(k * n)).map { _ in uniform() }
            var c = [Float](repeating: 0, count: m * n)
            let lda = transA ? m : k
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<repeats {
                if own {
                    Float.gemm(transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: n, accumulate: true, c: &c, ldc: n)
                } else {
                    BLASInfo.sgemm(transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: n, accumulate: true, c: &c, ldc: n)
                }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(repeats)
        }
    }

    public struct ProductResult: Codable, Sendable {
        public var shape: ProductShape
        public var ownGflops: Double
        public var openBLASGflops: Double
    }

    /// The weight-gradient and head products of one chunk (rows = chunk streams · (T+1)) of a
    /// language model with this config, and a square 512 for scale.
    public static func productShapes(config: ModelConfig, chunkStreams: Int, window T: Int) -> [ProductShape] {
        let H = config.hiddenSize, GH = config.cell.gateCount * H, V = config.vocabularySize
        let rows = chunkStreams * (T + 1)
        var shapes = [ProductShape(name: "dW_hh", transA: true, m: GH, n: H, k: rows)]
        if config.layerCount > 1 { shapes.append(ProductShape(name: "dW_ih", transA: true, m: GH, n: H, k: rows)) }
        shapes.append(ProductShape(name: "dW_head", transA: true, m: V, n: H, k: rows))
        shapes.append(ProductShape(name: "square", transA: false, m: 512, n: 512, k: 512))
        return shapes
    }

    /// Own kernel (at the current level) and cblas_sgemm on each shape, alternating, median of
    /// `rounds`, on the calling thread.
    public static func products(_ shapes: [ProductShape], rounds: Int = 7) -> [ProductResult] {
        shapes.map { shape in
            let flops = 2 * Double(shape.m * shape.n * shape.k)
            let repeats = max(1, Int(2e9 / flops))   // a round ≈ 20 ms at 100 GFLOP/s
            _ = shape.time(own: true); _ = shape.time(own: false)   // warm-up: pack buffers, BLAS threads
            var own: [Double] = [], blas: [Double] = []
            for _ in 0..<rounds {
                own.append(shape.time(own: true, repeats: repeats))
                blas.append(shape.time(own: false, repeats: repeats))
            }
            return ProductResult(shape: shape, ownGflops: shape.gflops(own.median!), openBLASGflops: shape.gflops(blas.median!))
        }
    }

    private static func median(of count: Int, _ body: () -> Double) -> Double {
        _ = body()   // warm-up
        return (0..<count).map { _ in body() }.median!
    }
}
