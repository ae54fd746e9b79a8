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
    @OptionGroup(title: "Parallelism") var balancing: BalanceFlags
    @OptionGroup var emulation: LocalEmulationFlags
    @OptionGroup(title: "Checkpoints") var checkpoints: CheckpointFlags
    @OptionGroup(title: "Output") var output: OutputFlags
    @OptionGroup(title: "Sampling") var sampling: SamplingFlags

    func validate() throws {
        try optimization.validateValues()
        try parallel.validateValues()
        _ = try emulation.chunkMilliseconds(workers: parallel.split.workers)
        try checkpoints.validateValues(evalEvery: output.evalEvery)
        try output.validateValues()
        try sampling.validateValues()
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let run = try TrainingRun(checkpoints: checkpoints, output: output, sampling: sampling)
        guard let setup = try run.setup(model: model, data: data, optimization: optimization, chunk: parallel.chunk) else { return }
        let (workers, threads) = parallel.split
        let plan = try run.plan(setup, workers: workers, shards: parallel.sharding.shards, local: true)
        let session = try run.session(setup, plan: plan, threads: threads)
        let stop = StopRequest()
        Signals.forward { stop.request($0, exitCode: $1) }
        try run.resumable {
            if workers == 1 && parallel.sharding.shards == 1 {
                let source = LocalGradientSource(plan: session.plan, threads: threads)
                try TrainingLoop(session: session, source: source, stop: stop, report: run.report(session)).run()
            } else {
                try LocalCluster.run(session: session, workers: workers, threads: threads, dataPath: setup.dataPath,
                                     tokenCache: data.tokenCache,
                                     heartbeatTimeout: parallel.heartbeatTimeout, minWorkers: parallel.minWorkers,
                                     shards: parallel.sharding.shards, balance: balancing.balance.isOn,
                                     chunkMilliseconds: try emulation.chunkMilliseconds(workers: workers), stop: stop,
                                     report: run.report(session), log: run.console.line)
            }
        }
        run.sample(session, label: "sample")
    }
}

/// The parts of `train` and `serve` around the loop, in the order nothing is lost by: every
/// flag and output path checked, the corpus read and the plan checked against the process
/// counts; only then an earlier run moved aside (`--force`), the log opened, processes and
/// sockets started.
struct TrainingRun {
    let checkpoints: CheckpointFlags
    let output: OutputFlags
    let sampling: SamplingFlags
    let console: Console

    /// Checks every output path (before the corpus is read) without creating anything.
    init(checkpoints: CheckpointFlags, output: OutputFlags, sampling: SamplingFlags) throws {
        self.checkpoints = checkpoints
        self.output = output
        self.sampling = sampling
        if let directory = checkpoints.directory { try OutputPath.requireWritableDirectory(directory.path, flag: "--checkpoint") }
        if let log = output.logJsonl { try OutputPath.requireWritableFile(log, flag: "--log-jsonl") }
        console = Console(printEvery: output.printEvery, verbose: output.verbose)
    }

    /// The run's config and corpus; nil (after saying so) when a resumed run has nothing to do.
    /// A new run's `--checkpoint` must not hold another run unless `--force`.
    func setup(model: ModelFlags, data: DataFlags, optimization: OptimizationFlags, chunk: Int?) throws -> RunSetup? {
        if !checkpoints.resume, !checkpoints.force, let directory = checkpoints.directory {
            try CheckpointGuard.requireFree(directory)
        }
        let setup = try RunSetup(model: model, data: data, optimization: optimization, chunk: chunk,
                                 checkpoints: checkpoints, log: console.line)
        if setup.isFinished {
            console.line("\(checkpoints.checkpoint) finished its run at step \(setup.completedSteps) of \(setup.config.steps): nothing to do (give --steps above \(setup.completedSteps) to train further)")
            return nil
        }
        return setup
    }

    /// The run's plan, checked against the worker and shard counts (`Preflight`).
    func plan(_ setup: RunSetup, workers: Int, shards: Int, local: Bool) throws -> RunPlan {
        try Preflight.requireMemory(setup, workers: workers, local: local)
        let plan = try RunPlan(config: setup.config, corpus: setup.corpus, validation: setup.validation)
        try Preflight.check(plan, workers: workers, shards: shards, local: local)
        return plan
    }

    /// Everything checked: moves an earlier run aside (`--force`), opens the log (a resumed
    /// run appends to its own unless --log-jsonl names another), makes the session.
    func session(_ setup: RunSetup, plan: RunPlan, threads: Int) throws -> TrainingSession {
        if checkpoints.force, !checkpoints.resume, let directory = checkpoints.directory,
           let aside = try CheckpointGuard.moveAside(directory) {
            console.line("--force: moved the earlier run at \(directory.path) aside to \(aside.path)")
        }
        let logPath = (output.logJsonl ?? (checkpoints.resume ? setup.savedLogPath : nil)).map { URL(fileURLWithPath: $0).path }
        if let logPath {
            try console.openLog(logPath, append: checkpoints.resume)
            if output.logJsonl == nil { console.line("appending to the run's log \(logPath)") }
        }
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
        options.logPath = logPath
        return try TrainingSession(plan: plan, corpus: setup.corpus, options: options)
    }

    /// Runs the loop; when it ends early (a signal, a failure) with a checkpoint on disk, says
    /// the command that continues it before the error ends the process.
    func resumable(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch {
            if let directory = checkpoints.directory, Checkpoint.savedRun(in: directory) != nil {
                console.line("resume with: \(ResumeCommand.line(arguments: CommandLine.arguments, checkpoint: checkpoints.checkpoint))")
            }
            throw error
        }
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
