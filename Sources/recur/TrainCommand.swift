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
        workers start a local coordinator and worker processes on a unix socket. \
        `recur train --resume DIR --steps N` continues a run with its own config.
        """)

    @OptionGroup(title: "Model") var model: ModelFlags
    @OptionGroup(title: "Data") var data: DataFlags
    @OptionGroup(title: "Optimization") var optimization: OptimizationFlags
    @OptionGroup(title: "Parallelism") var parallel: ParallelFlags
    @OptionGroup(title: "Checkpoints") var checkpoints: CheckpointFlags
    @OptionGroup(title: "Output") var output: OutputFlags
    @OptionGroup(title: "Sampling") var sampling: SamplingFlags

    func validate() throws {
        try optimization.validateValues()
        try parallel.validateValues()
        try checkpoints.validateValues(evalEvery: output.evalEvery)
        try output.validateValues()
        try sampling.validateValues()
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let run = try TrainingRun(checkpoints: checkpoints, output: output, sampling: sampling)
        guard let setup = try run.setup(model: model, data: data, optimization: optimization, chunk: parallel.chunk) else { return }
        try setup.config.requireMemory(vocabularySize: setup.corpus.vocabulary.count)
        let (workers, threads) = parallel.split
        let session = try run.session(setup, threads: threads)
        let stop = StopRequest()
        Signals.forward { stop.request($0, exitCode: $1) }
        if workers == 1 && parallel.sharding.shards == 1 {
            let source = LocalGradientSource(plan: session.plan, threads: threads)
            try TrainingLoop(session: session, source: source, stop: stop, report: run.report(session)).run()
        } else {
            try LocalCluster.run(session: session, workers: workers, threads: threads, dataPath: setup.dataPath,
                                 tokenCache: data.tokenCache,
                                 heartbeatTimeout: parallel.heartbeatTimeout, minWorkers: parallel.minWorkers,
                                 shards: parallel.sharding.shards, stop: stop,
                                 report: run.report(session), log: run.console.line)
        }
        run.sample(session, label: "sample")
    }
}

/// The parts of `train` and `serve` around the loop: output paths checked before anything
/// else, the console, the run's setup, samples.
struct TrainingRun {
    let checkpoints: CheckpointFlags
    let output: OutputFlags
    let sampling: SamplingFlags
    let console: Console

    /// Checks every output path (before the corpus is read), then opens the log.
    init(checkpoints: CheckpointFlags, output: OutputFlags, sampling: SamplingFlags) throws {
        self.checkpoints = checkpoints
        self.output = output
        self.sampling = sampling
        if let directory = checkpoints.directory { try OutputPath.requireWritableDirectory(directory.path, flag: "--checkpoint") }
        console = try Console(logJsonl: output.logJsonl, append: checkpoints.resume, printEvery: output.printEvery,
                              verbose: output.verbose)
    }

    /// The run's config and corpus; nil (after saying so) when a resumed run has nothing to do.
    func setup(model: ModelFlags, data: DataFlags, optimization: OptimizationFlags, chunk: Int?) throws -> RunSetup? {
        let setup = try RunSetup(model: model, data: data, optimization: optimization, chunk: chunk,
                                 checkpoints: checkpoints, log: console.line)
        if setup.isFinished {
            console.line("\(checkpoints.checkpoint) finished its run at step \(setup.completedSteps) of \(setup.config.steps): nothing to do (give --steps above \(setup.completedSteps) to train further)")
            return nil
        }
        if !checkpoints.resume, !checkpoints.force, let directory = checkpoints.directory {
            try CheckpointGuard.requireSameRun(directory, config: setup.config, corpus: setup.corpus)
        }
        return setup
    }

    func session(_ setup: RunSetup, threads: Int) throws -> TrainingSession {
        var options = RunOptions()
        options.threads = threads
        options.evalEvery = output.evalEvery
        options.evalStreams = output.evalStreams
        options.evalCharacters = output.evalChars
        options.checkpointDirectory = checkpoints.directory
        options.checkpointEvery = checkpoints.checkpointEvery
        options.resume = checkpoints.resume
        options.keep = checkpoints.keep
        options.earlyStop = checkpoints.earlyStop
        options.initFrom = checkpoints.initFrom.map { URL(fileURLWithPath: $0) }
        return try TrainingSession(config: setup.config, corpus: setup.corpus, options: options, validation: setup.validation)
    }

    /// The console's report, plus a sample every --sample-every steps.
    func report(_ session: TrainingSession) -> (TrainingEvent) -> Void {
        let console = self.console, every = output.sampleEvery
        return { event in
            console.report(event)
            if every > 0, case .step(let r) = event, r.step % every == 0, r.step < session.config.steps {
                self.sample(session, label: "sample at step \(r.step)")
            }
        }
    }

    /// Prints --sample-length characters from the session's current weights (dropout off).
    func sample(_ session: TrainingSession, label: String) {
        guard sampling.sampleLength > 0, !session.config.isClassifier else { return }
        do {
            let text = try sampling.sampler(seed: session.config.seed).sample(
                model: session.model, vocabulary: session.corpus.vocabulary, parameters: session.update.values,
                prime: sampling.prime, length: sampling.sampleLength)
            console.line("\(label):\n\(text)")
        } catch {
            console.line("no \(label): \(error)")
        }
    }
}
