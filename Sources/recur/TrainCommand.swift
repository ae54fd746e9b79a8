import ArgumentParser
import Foundation
import Recurrent
import Training

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a character-level language model (the main job).",
        discussion: """
        Defaults: a 2-layer LSTM of 256 units on the built-in corpus, Adam 2e-3, clip 5, \
        T=64, N=64, 500 steps, then a sample. --workers 1 trains in this process; more \
        workers start a local coordinator and worker processes on loopback.
        """)

    @OptionGroup var model: ModelFlags
    @OptionGroup var data: DataFlags
    @OptionGroup var optimization: OptimizationFlags
    @OptionGroup var runFlags: RunFlags
    @Option(name: .customLong("heartbeat-timeout"), help: "With --workers > 1: seconds of silence after which a worker counts as dead.")
    var heartbeatTimeout = 30.0
    @Option(name: .customLong("min-workers"), help: "With --workers W > 1: go on without a lost worker while at least this many remain, bit for bit (default: W, no loss tolerated).")
    var minWorkers: Int?

    func validate() throws {
        try optimization.validateValues()
        try runFlags.validateValues()
        try TransportFlags.validateHeartbeatTimeout(heartbeatTimeout)
        try model.requireTrainingMemory(data: data, chunk: optimization.chunk)
        if let minWorkers, !(1...parallelism.workers).contains(minWorkers) {
            throw ValidationError("--min-workers must be between 1 and the worker count (\(parallelism.workers)), got \(minWorkers)")
        }
    }

    /// Workers and threads: fill the machine. Default W = cores (one thread each) when
    /// there is more than one core; with only --threads K given, W = cores / K.
    var parallelism: (workers: Int, threads: Int) {
        let cores = Machine.cores
        switch (runFlags.workers, runFlags.threads) {
        case let (w?, k?): return (w, k)
        case let (w?, nil): return (w, max(1, cores / w))
        case let (nil, k?): return (max(1, cores / k), k)
        case (nil, nil): return (cores > 1 ? cores : 1, 1)
        }
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let corpus = try data.loadCorpus()
        let config = try TrainingConfig(model: model, data: data, optimization: optimization, corpus: corpus)
        let (workers, threads) = parallelism
        let session = try TrainingSession(config: config, corpus: corpus, options: runFlags.runOptions(threads: threads))
        let console = try Console(logJsonl: runFlags.logJsonl, append: runFlags.resume)
        let stop = StopRequest()
        Signals.forward { stop.request($0, exitCode: $1) }
        if workers == 1 && runFlags.shards == 1 {
            let source = LocalGradientSource(plan: session.plan, threads: threads)
            try TrainingLoop(session: session, source: source, stop: stop, report: console.report).run()
        } else {
            try LocalCluster.run(session: session, workers: workers, threads: threads, dataPath: data.data,
                                 heartbeatTimeout: heartbeatTimeout, minWorkers: minWorkers, shards: runFlags.shards, stop: stop,
                                 report: console.report, log: console.line)
        }
        if runFlags.sampleLength > 0 {
            let text = try Sampler(temperature: 1, seed: config.seed).sample(
                model: session.model, vocabulary: corpus.vocabulary, parameters: session.update.values,
                prime: "", length: runFlags.sampleLength)
            console.line("sample:\n\(text)")
        }
    }
}
