import ArgumentParser
import Foundation
import Recurrent
import Training

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training speed; prints one JSON object on its own line.",
        discussion: """
        Runs --warmup untimed steps, then --steps timed ones, and reports the median. \
        --kernel times one workspace's forward+backward on one thread instead (N=--batch \
        streams), with the own kernels' square product for scale. --products times each \
        weight-gradient product shape of the model (one chunk: --chunk streams · (--seq+1) rows) \
        with Recur's kernels and with OpenBLAS's cblas_sgemm, one thread. The kernel level is \
        the CPU's best unless RECUR_KERNEL_LEVEL names another.
        """)

    @OptionGroup var model: ModelFlags
    @OptionGroup var data: DataFlags
    @Option(help: "Timed steps.")
    var steps = 20
    @Option(help: "Untimed warm-up steps.")
    var warmup = 3
    @Option(help: "Threads per worker (default: the machine's cores).")
    var threads: Int?
    @Option(help: "Worker processes (1 = in-process).")
    var workers = 1
    @Option(help: "Parameter servers (`recur shard` processes; 1 = the coordinator alone).")
    var shards = 1
    @Option(help: "Streams per gradient chunk (default: batch/4).")
    var chunk: Int?
    @Flag(help: "Microbenchmark of the recurrent kernel on one thread.")
    var kernel = false
    @Flag(help: "GFLOP/s of each product shape, own kernels against cblas_sgemm, one thread.")
    var products = false

    func validate() throws {
        guard steps >= 1, warmup >= 0 else { throw ValidationError("--steps must be ≥ 1 and --warmup ≥ 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        guard shards >= 1 else { throw ValidationError("--shards must be at least 1, got \(shards)") }
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let corpus = try data.loadCorpus()
        if products {
            let config = ModelConfig(cell: model.resolvedCell, vocabularySize: corpus.vocabulary.count,
                                     hiddenSize: model.resolvedHidden, layerCount: model.resolvedLayers)
            let chunkStreams = TrainingConfig().applying(model: model, data: data, chunk: chunk).chunkStreams
            let shapes = KernelBenchmark.productShapes(config: config, chunkStreams: chunkStreams, window: data.resolvedSeq)
            let results = KernelBenchmark.products(shapes, rounds: steps)
            try printJSON([
                "benchmark": "products", "kernel_level": KernelLevel.current.description, "blas_core": BLASInfo.coreName,
                "threads": 1, "rounds": steps,
                "products": results.map { r -> [String: Any] in
                    ["name": r.shape.name, "trans_a": r.shape.transA, "m": r.shape.m, "n": r.shape.n, "k": r.shape.k,
                     "own_gflops": r.ownGflops, "openblas_gflops": r.openBLASGflops]
                },
            ])
            return
        }
        if kernel {
            let config = ModelConfig(cell: model.resolvedCell, vocabularySize: corpus.vocabulary.count,
                                     hiddenSize: model.resolvedHidden, layerCount: model.resolvedLayers)
            let r = KernelBenchmark.run(config: config, streams: data.resolvedBatch, window: data.resolvedSeq, iterations: steps)
            try printJSON([
                "benchmark": "kernel", "cell": r.cell, "layers": r.layers, "hidden": r.hidden, "vocab": r.vocabulary,
                "streams": r.streams, "seq": r.window, "threads": 1, "iterations": r.iterations,
                "tokens_per_sec": r.tokensPerSecond, "step_seconds": r.secondsMedian, "gflops": r.gflops,
                "forward_fraction": r.forwardFraction, "gemm_gflops_1thread": r.gemmGflops, "kernel_level": r.kernelLevel,
            ])
            return
        }
        var config = TrainingConfig().applying(model: model, data: data, chunk: chunk)
        config.steps = steps + warmup
        try config.validate()
        try config.requireMemory(vocabularySize: corpus.vocabulary.count)
        var options = RunOptions()
        options.threads = threads ?? max(1, Machine.cores / workers)
        options.evaluateAtEnd = false
        options.checkpointDirectory = nil
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        var records: [StepRecord] = []
        let collect: (TrainingEvent) -> Void = { event in
            if case .step(let r) = event { records.append(r) }
        }
        var threadCount = options.threads
        if workers == 1 && shards == 1 {
            let source = LocalGradientSource(plan: session.plan, threads: options.threads)
            try TrainingLoop(session: session, source: source, report: collect).run()
            threadCount = source.engine.threads
        } else {
            // Worker output goes to stderr: stdout carries only the JSON line.
            try LocalCluster.run(session: session, workers: workers, threads: options.threads, dataPath: data.data, tokenCache: data.tokenCache,
                                 heartbeatTimeout: 30, shards: shards, stop: StopRequest(), report: collect,
                                 log: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) })
        }
        try printJSON(Self.result(records: Array(records.dropFirst(warmup)), config: config, session: session,
                                  threads: threadCount, workers: workers, shards: shards))
    }

    static func result(records: [StepRecord], config: TrainingConfig, session: TrainingSession,
                       threads: Int, workers: Int, shards: Int) -> [String: Any] {
        func median(_ values: [Double]) -> Double { values.median ?? 0 }
        let tokensPerSecond = median(records.map(\.tokensPerSecond))
        // Medians of a step's parts, in seconds (either task).
        let timing: [String: Any] = [
            "step_seconds": median(records.map(\.stepSeconds)),
            "compute_seconds": median(records.map(\.computeSeconds)),
            "communicate_seconds": median(records.map(\.communicateSeconds)),
            "wait_seconds": median(records.map(\.waitSeconds)),
        ]
        if config.isClassifier {
            // A step's "tokens" are its examples.
            return [
                "benchmark": "train", "task": "classify", "cell": config.cell.rawValue, "layers": config.layers,
                "hidden": config.hidden, "bidirectional": session.model.bidirectional, "max_len": config.resolvedMaxLength,
                "labels": session.model.outputCount, "vocab": session.model.vocabularySize, "batch": config.streams,
                "chunk": config.chunkStreams, "workers": workers, "shards": shards, "threads": threads, "timed_steps": records.count,
                "examples_per_sec": tokensPerSecond,
                "kernel_level": KernelLevel.current.description, "corpus": session.corpus.name, "final_loss": records.last?.loss ?? 0,
            ].merging(timing) { a, _ in a }
        }
        return [
            "benchmark": "train", "cell": config.cell.rawValue, "layers": config.layers, "hidden": config.hidden,
            "vocab": session.model.vocabularySize, "seq": config.window, "batch": config.streams,
            "chunk": config.chunkStreams, "workers": workers, "shards": shards, "threads": threads, "timed_steps": records.count,
            "tokens_per_sec": tokensPerSecond,
            "gflops": tokensPerSecond * 6 * Double(session.model.matmulWeightCount) / 1e9,
            "kernel_level": KernelLevel.current.description, "corpus": session.corpus.name,
            "final_loss": records.last?.loss ?? 0,
        ].merging(timing) { a, _ in a }
    }
}

func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
