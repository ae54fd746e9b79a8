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

    /// Runs `session` to its last step through a `LocalTrainer` (no evaluation, no checkpoint)
    /// and returns the trainer and the per-step losses.
    @discardableResult
    public static func runSteps(_ session: TrainingSession) throws -> (trainer: LocalTrainer, losses: [Double]) {
        var losses: [Double] = []
        let trainer = LocalTrainer(session: session) { event in
            if case .step(let record) = event { losses.append(record.loss) }
        }
        try trainer.runSteps()
        return (trainer, losses)
    }

    /// Runs `session` with `LocalTrainer.run()` (final evaluation and checkpoint included).
    @discardableResult
    public static func run(_ session: TrainingSession) throws -> (trainer: LocalTrainer, losses: [Double], summary: Summary) {
        var losses: [Double] = []
        let trainer = LocalTrainer(session: session) { event in
            if case .step(let record) = event { losses.append(record.loss) }
        }
        let summary = try trainer.run()
        return (trainer, losses, summary)
    }

    /// The carried state of a trainer's engine: h, and c (empty unless LSTM).
    public static func carriedState(_ trainer: LocalTrainer) -> (h: [Float], c: [Float]) {
        let state = trainer.engine.state
        let h = Array(UnsafeBufferPointer(start: state.h, count: state.count))
        let c = state.c.map { Array(UnsafeBufferPointer(start: $0, count: state.count)) } ?? []
        return (h, c)
    }

    /// Bit patterns, so that `==` on the result means bit-identical (and NaN equals itself).
    public static func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
    public static func bits(_ values: [Double]) -> [UInt64] { values.map(\.bitPattern) }
}
