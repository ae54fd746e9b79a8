import Dispatch
import Foundation
import Recurrent

/// The in-process trainer (`--workers 1`): one `GradientEngine` over all N streams on K
/// threads, the coordinator step in the same process.
public final class LocalTrainer {
    public let session: TrainingSession
    public let engine: GradientEngine
    private let report: (TrainingEvent) -> Void

    public init(session: TrainingSession, report: @escaping (TrainingEvent) -> Void) {
        self.session = session
        self.report = report
        let config = session.config
        engine = GradientEngine(config: session.model, train: session.train, streamLayout: session.streamLayout,
                                streams: 0..<config.streams, chunkStreams: config.chunkStreams,
                                threads: session.options.threads)
        if let state = session.restoredState {
            engine.state.h.update(from: state.h, count: engine.state.count)
            if let c = engine.state.c { c.update(from: state.c, count: engine.state.count) }
        }
    }

    /// Runs until `config.steps` with evaluation and checkpoints; returns the summary
    /// (also reported).
    @discardableResult
    public func run() throws -> Summary {
        report(.started(session.startInfo(mode: "in-process, \(engine.threads) thread(s)")))
        let start = DispatchTime.now().uptimeNanoseconds
        let (losses, rates) = try runSteps(periodic: true)
        let validation = session.finalEvaluation()
        if let validation { report(.evaluation(step: session.step, result: validation)) }
        let path = try checkpoint()
        let summary = Summary(steps: session.step, finalTrainLoss: losses.suffix(20).mean,
                              validation: validation, tokensPerSecond: rates.median ?? 0,
                              wallSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                              checkpoint: path)
        report(.finished(summary))
        return summary
    }

    /// The step loop alone (benchmarks: no evaluation or checkpoints unless `periodic`).
    @discardableResult
    public func runSteps(periodic: Bool = false) throws -> (losses: [Double], tokensPerSecond: [Double]) {
        let session = self.session
        var losses: [Double] = [], rates: [Double] = []
        while !session.isFinished {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let (epoch, stepInEpoch) = session.position
            let (lossSum, gradient) = engine.computeGradient(parameters: UnsafePointer(session.update.parameters.baseAddress!),
                                                             stepInEpoch: stepInEpoch, resetState: stepInEpoch == 0)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let tokens = engine.tokensPerStep
            let update = try session.apply(gradientSum: gradient, lossSum: lossSum, tokenCount: tokens)
            let t2 = DispatchTime.now().uptimeNanoseconds
            let record = StepRecord(step: session.step, epoch: epoch, loss: lossSum / Double(tokens),
                                    gradientNorm: update.gradientNorm, learningRate: update.learningRate,
                                    tokens: tokens, stepSeconds: Double(t2 - t0) / 1e9,
                                    computeSeconds: Double(t1 - t0) / 1e9)
            losses.append(record.loss)
            rates.append(record.tokensPerSecond)
            report(.step(record))
            guard periodic else { continue }
            if session.wantsEvaluation, let result = session.evaluate() {
                report(.evaluation(step: session.step, result: result))
            }
            if session.wantsCheckpoint, !session.isFinished {
                try checkpoint()
            }
        }
        return (losses, rates)
    }

    @discardableResult
    private func checkpoint() throws -> String? {
        let state = engine.state
        let h = Array(UnsafeBufferPointer(start: state.h, count: state.count))
        let c = state.c.map { Array(UnsafeBufferPointer(start: $0, count: state.count)) } ?? []
        let path = try session.writeCheckpoint(hiddenH: h, hiddenC: c)
        if let path { report(.checkpoint(step: session.step, path: path)) }
        return path
    }
}

extension Collection where Element == Double {
    public var mean: Double? { isEmpty ? nil : reduce(0, +) / Double(count) }
    /// The upper median (the middle element of the sorted values).
    public var median: Double? { isEmpty ? nil : sorted()[count / 2] }
}
