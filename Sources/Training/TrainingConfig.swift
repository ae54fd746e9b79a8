import Foundation
import Recurrent

/// Everything that determines the numbers a run produces: model, data layout, optimisation,
/// seed. Two runs with equal configs on the same corpus give identical weights, whatever
/// their threads and workers. It travels to workers as JSON and is stored in checkpoints.
public struct TrainingConfig: Codable, Equatable, Sendable {
    public var cell: CellType = .lstm
    public var layers = 2
    public var hidden = 256
    /// N, the global number of streams (the batch).
    public var streams = 64
    /// T, the BPTT window.
    public var window = 64
    /// Total optimizer steps of the run (resume continues up to it).
    public var steps = 1000
    public var optimizer = OptimizerConfig(kind: .adam, learningRate: 2e-3)
    /// Step decay of the learning rate: multiply by `learningRateDecay` every
    /// `learningRateDecayEvery` steps (0 = constant).
    public var learningRateDecayEvery = 0
    public var learningRateDecay: Float = 1
    /// Global L2 norm threshold for the averaged gradient (0 = off).
    public var clip: Float = 5
    public var seed: UInt64 = 1234
    public var validationFraction = 0.1
    /// Streams per gradient chunk, the fixed unit of parallel work (see `GradientEngine`).
    public var chunkStreams = 16

    public init() {}

    public func model(vocabularySize: Int) -> ModelConfig {
        ModelConfig(cell: cell, vocabularySize: vocabularySize, hiddenSize: hidden, layerCount: layers)
    }

    public var schedule: LearningRateSchedule {
        LearningRateSchedule(base: optimizer.learningRate, decayEvery: learningRateDecayEvery,
                             decayFactor: learningRateDecay)
    }

    /// The default chunk: a quarter of the streams (so that up to 4 workers or threads get
    /// whole chunks), at least 1, and a divisor of N.
    public static func defaultChunkStreams(streams: Int) -> Int {
        var chunk = max(1, streams / 4)
        while streams % chunk != 0 { chunk -= 1 }
        return chunk
    }

    /// Checks values a user can get wrong; one line per problem.
    public func validate() throws {
        func fail(_ message: String) -> TrainingError { .invalidConfig(message) }
        guard layers >= 1 else { throw fail("--layers must be at least 1, got \(layers)") }
        guard hidden >= 1 else { throw fail("--hidden must be at least 1, got \(hidden)") }
        guard streams >= 1 else { throw fail("--batch must be at least 1, got \(streams)") }
        guard window >= 1 else { throw fail("--seq must be at least 1, got \(window)") }
        guard steps >= 1 else { throw fail("--steps must be at least 1, got \(steps)") }
        guard optimizer.learningRate > 0, optimizer.learningRate.isFinite else {
            throw fail("--lr must be a positive number, got \(optimizer.learningRate)")
        }
        guard clip >= 0, clip.isFinite else { throw fail("--clip must be ≥ 0 (0 = off), got \(clip)") }
        guard validationFraction >= 0, validationFraction < 1 else {
            throw fail("--val-fraction must be in [0, 1), got \(validationFraction)")
        }
        guard learningRateDecayEvery >= 0 else { throw fail("--lr-decay-every must be ≥ 0") }
        guard learningRateDecay > 0, learningRateDecay <= 1 else {
            throw fail("--lr-decay must be in (0, 1], got \(learningRateDecay)")
        }
        guard chunkStreams >= 1, streams % chunkStreams == 0 else {
            throw fail("--chunk \(chunkStreams) must divide --batch \(streams)")
        }
    }

    /// Canonical JSON (sorted keys): equal configs give equal bytes.
    public func canonicalJSON() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    public static func fromJSON(_ text: String) throws -> TrainingConfig {
        do {
            return try JSONDecoder().decode(TrainingConfig.self, from: Data(text.utf8))
        } catch {
            throw TrainingError.invalidConfig("unreadable training config: \(error)")
        }
    }
}

/// Errors of the training layer a user can cause or meet.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case checkpoint(String)
    case diverged(step: Int, loss: Double, lastCheckpoint: String?)
    case vocabulary(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): return m
        case .checkpoint(let m): return m
        case .diverged(let step, let loss, let last):
            let keep = last.map { "; the last good checkpoint is \($0)" } ?? "; no checkpoint was written"
            return "training diverged at step \(step) (loss \(loss)): lower --lr or set --clip\(keep)"
        case .vocabulary(let m): return m
        }
    }
}
