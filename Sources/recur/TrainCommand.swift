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

    func validate() throws {
        try optimization.validateValues()
        try runFlags.validateValues()
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let corpus = try data.loadCorpus()
        let config = try TrainingConfig(model: model, data: data, optimization: optimization, corpus: corpus)
        let threads = runFlags.threads ?? Machine.cores
        let console = try Console(logJsonl: runFlags.logJsonl)
        let session = try TrainingSession(config: config, corpus: corpus, options: runFlags.runOptions(threads: threads))
        let trainer = LocalTrainer(session: session, report: console.report)
        try trainer.run()
        if runFlags.sampleLength > 0 {
            let text = try Sampler(temperature: 1, seed: config.seed).sample(
                model: session.model, vocabulary: corpus.vocabulary, parameters: session.update.values,
                prime: "", length: runFlags.sampleLength)
            console.line("sample:\n\(text)")
        }
    }
}
