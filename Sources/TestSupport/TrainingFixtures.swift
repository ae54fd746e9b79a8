import Foundation
import Recurrent
import Training

/// A fresh directory under the system temp dir, removed with everything in it on deinit.
public final class TemporaryDirectory {
    public let url: URL

    public init(_ label: String = "recur-test") {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(getpid())-\(UUID().uuidString)", isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    public var path: String { url.path }

    /// `url` + name (not created).
    public func child(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// Small runs for the training tests: configs of a few hundred parameters and corpora of a
/// few KB, so that a whole test class finishes in seconds on two cores.
public enum TrainingFixtures {
    /// A tiny config; the caller overrides what the test is about.
    public static func config(cell: CellType = .lstm, layers: Int = 1, hidden: Int = 8,
                              streams: Int = 8, window: Int = 6, chunkStreams: Int = 2, steps: Int = 5,
                              optimizer: OptimizerConfig = OptimizerConfig(kind: .adam, learningRate: 1e-2),
                              clip: Float = 5, seed: UInt64 = 7, validationFraction: Double = 0.1) -> TrainingConfig {
        var c = TrainingConfig()
        c.cell = cell
        c.layers = layers
        c.hidden = hidden
        c.streams = streams
        c.window = window
        c.chunkStreams = chunkStreams
        c.steps = steps
        c.optimizer = optimizer
        c.clip = clip
        c.seed = seed
        c.validationFraction = validationFraction
        return c
    }

    /// A prefix of the built-in generator's play (structured text, ~40 symbols).
    public static func playCorpus(characters: Int, seed: UInt64 = 3) -> Corpus {
        let text = BuiltinCorpus.text(seed: seed, targetSize: characters)
        return Corpus(text: String(text.unicodeScalars.prefix(characters)), name: "play-\(characters)")
    }

    /// Runs `session` to its last step through a `TrainingLoop` with the local gradient
    /// source, step by step (no evaluation, no checkpoint); returns the loop and the losses.
    @discardableResult
    public static func runSteps(_ session: TrainingSession) throws -> (trainer: TrainingLoop, losses: [Double]) {
        let trainer = TrainingLoop(session: session, source: LocalGradientSource(plan: session.plan, threads: session.options.threads),
                                   report: { _ in })
        var losses: [Double] = []
        while !session.isFinished { losses.append(try trainer.step().loss) }
        return (trainer, losses)
    }

    /// Runs `session` with `TrainingLoop.run()` (final evaluation and checkpoint included).
    @discardableResult
    public static func run(_ session: TrainingSession) throws -> (trainer: TrainingLoop, losses: [Double], summary: Summary) {
        var losses: [Double] = []
        let trainer = TrainingLoop(session: session, source: LocalGradientSource(plan: session.plan, threads: session.options.threads)) { event in
            if case .step(let record) = event { losses.append(record.loss) }
        }
        let summary = try trainer.run()
        return (trainer, losses, summary)
    }

    /// The carried state the loop holds: h, and c (empty unless LSTM).
    public static func carriedState(_ trainer: TrainingLoop) -> (h: [Float], c: [Float]) {
        (trainer.state.values("h"), trainer.session.model.cell.hasCellState ? trainer.state.values("c") : [])
    }

    /// Bit patterns, so that `==` on the result means bit-identical (and NaN equals itself).
    public static func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
    public static func bits(_ values: [Double]) -> [UInt64] { values.map(\.bitPattern) }
}
