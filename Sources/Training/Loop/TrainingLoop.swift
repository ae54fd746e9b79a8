import Dispatch
import Foundation
import Recurrent

/// The one training loop of every mode (`recur train --workers 1`, `--workers W`, `recur serve`):
///
///     start the source → for each step: gradient from the source → guard → divide by tokens,
///     clip, optimizer step (the `ParameterStore`) → commit the carried state → step event →
///     evaluation / checkpoint when due → final evaluation, checkpoint, summary
///
/// It owns the run's carried hidden state (L, N, H) and checkpoints, and stops safely: a
/// diverging loss or gradient, a failing source or a stop request ends the run after a
/// checkpoint of the last completed step, and the source is always released.
public final class TrainingLoop {
    public let session: TrainingSession
    public let source: GradientSource
    /// Where each step is applied: the session's update here, unless a sharded run's store is given.
    public let store: ParameterStore
    public let stop: StopRequest
    private let report: (TrainingEvent) -> Void

    /// Carried state after the last completed step (L, N, H), and the buffer the source
    /// writes the next step's state into; they swap when a step completes.
    public private(set) var state: CarriedState
    private var next: CarriedState
    /// Named best and recent checkpoints beside the latest one, and early stopping.
    private let history: CheckpointHistory?

    public init(session: TrainingSession, source: GradientSource, store: ParameterStore? = nil, stop: StopRequest = StopRequest(),
                report: @escaping (TrainingEvent) -> Void) {
        self.session = session
        self.source = source
        self.store = store ?? LocalParameterStore(session.update)
        self.stop = stop
        self.report = report
        state = CarriedState(model: session.model, streams: session.config.streams)
        next = CarriedState(model: session.model, streams: session.config.streams)
        history = session.options.checkpointDirectory.map {
            CheckpointHistory(latest: $0, keep: session.options.keep, earlyStop: session.options.earlyStop,
                              resumed: session.options.resume)
        }
        if let restored = session.restoredState {
            state.setValues("h", restored.h)
            if session.model.cell.hasCellState { state.setValues("c", restored.c) }
        }
    }

    /// Trains to `config.steps` with evaluation and checkpoints; returns the summary (also
    /// reported). Throws after checkpointing the last completed step when the run fails or
    /// is stopped.
    @discardableResult
    public func run() throws -> Summary {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            try source.start(step: session.step, state: state)
        } catch {
            source.finish(reason: "\(error)")
            throw error
        }
        report(.started(session.startInfo(mode: source.mode)))
        for line in session.startNotes { report(.message(line)) }
        var losses: [Double] = [], rates: [Double] = []
        var balancing: BalancingCounts?
        var validation: Evaluator.Result?
        let path: String?
        do {
            while !session.isFinished {
                try stop.check()
                let record = try step()
                losses.append(record.loss)
                rates.append(record.tokensPerSecond)
                if let counts = record.balancing { balancing = (balancing ?? BalancingCounts()) + counts }
                report(.step(record))
                if wantsEvaluation, let result = try evaluate() {
                    report(.evaluation(step: session.step, result: result))
                    if try keepNamed(result) {
                        validation = result
                        report(.message("early stop at step \(session.step): no better validation loss in \(session.options.earlyStop) evaluations (best \(String(format: "%.4f", history!.best!.loss)) at step \(history!.best!.step))"))
                        break
                    }
                }
                if wantsCheckpoint, !session.isFinished { try checkpoint() }
            }
            try store.synchronize()   // the weights the caller samples from
            if validation == nil, session.options.evaluateAtEnd, let result = try evaluate() {
                validation = result
                report(.evaluation(step: session.step, result: result))
                _ = try keepNamed(result)
            }
            path = try checkpoint()
        } catch {
            throw failed(error)
        }
        source.finish(reason: "training finished at step \(session.step)")
        let summary = Summary(steps: session.step, finalTrainLoss: losses.suffix(20).mean,
                              validation: validation, tokensPerSecond: rates.median ?? 0,
                              wallSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                              checkpoint: path, balancing: balancing)
        report(.finished(summary))
        return summary
    }

    /// One step; returns its record (the session has advanced).
    public func step() throws -> StepRecord {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let s = session.step
        let (epoch, stepInEpoch) = session.position
        if stepInEpoch == 0 { state.reset() }   // each epoch starts from zero state
        let request = StepRequest(step: s, stepInEpoch: stepInEpoch,
                                  parameters: UnsafePointer(session.update.parameters.baseAddress!))
        let g = try source.gradient(for: request, state: state, next: next)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let update = try apply(g)
        swap(&state, &next)
        let t2 = DispatchTime.now().uptimeNanoseconds
        // compute = the source's compute + this update; communicate = the rest of the step.
        let stepSeconds = Double(t2 - t0) / 1e9
        let compute = g.computeSeconds + Double(t2 - t1) / 1e9
        return StepRecord(step: session.step, epoch: epoch, loss: g.lossSum / Double(g.tokenCount),
                          gradientNorm: update.gradientNorm, learningRate: update.learningRate, tokens: g.tokenCount,
                          stepSeconds: stepSeconds, computeSeconds: compute,
                          communicateSeconds: max(0, stepSeconds - compute - g.waitSeconds),
                          waitSeconds: g.waitSeconds, workers: g.workers, balancing: g.balancing)
    }

    /// The guard and the update: a loss that is not finite or exploded (above 3·ln V + 1),
    /// a gradient norm or a carried state that is not finite stops the run with nothing
    /// applied.
    private func apply(_ g: StepGradient) throws -> ParameterUpdate.Report {
        let loss = g.lossSum / Double(g.tokenCount)
        let limit = 3 * log(Double(session.model.vocabularySize)) + 1
        let diverged = TrainingError.diverged(step: session.step + 1, loss: loss, lastCheckpoint: session.lastCheckpoint)
        guard loss.isFinite, loss < limit, next.isFinite else { throw diverged }
        let report = try store.apply(g, step: session.step)
        guard report.gradientNorm.isFinite else { throw diverged }   // the update left the weights as they were
        session.step += 1
        return report
    }

    private var wantsEvaluation: Bool {
        let every = session.options.evalEvery
        return every > 0 && session.step % every == 0 && !session.isFinished
    }

    private var wantsCheckpoint: Bool {
        let every = session.options.checkpointEvery
        return session.options.checkpointDirectory != nil
            && (session.isFinished || (every > 0 && session.step % every == 0))
    }

    /// The named checkpoint of this evaluation (`CheckpointHistory`); true: stop early.
    private func keepNamed(_ result: Evaluator.Result) throws -> Bool {
        guard let history else { return false }
        let session = self.session, state = self.state
        try store.synchronize()
        return try source.whileServing {
            try history.record(step: session.step, loss: result.natsPerCharacter) { url in
                _ = try session.writeCheckpoint(state: state, to: url)
            }
        }
    }

    /// Reports `.evaluating` progress at most every `evaluationProgressInterval` seconds, so
    /// that a long evaluation shows it is alive.
    private func evaluate() throws -> Evaluator.Result? {
        let session = self.session, report = self.report
        try store.synchronize()
        let total = session.evaluatedCharacters, step = session.step, interval = session.options.evaluationProgressInterval
        var last = DispatchTime.now().uptimeNanoseconds
        return try source.whileServing {
            session.evaluate { done in
                let now = DispatchTime.now().uptimeNanoseconds
                guard Double(now - last) / 1e9 >= interval, done < total else { return }
                last = now
                report(.evaluating(step: step, characters: done, of: total))
            }
        }
    }


    /// Writes the checkpoint of the last completed step (while the source keeps serving).
    @discardableResult
    private func checkpoint() throws -> String? {
        let path = try writeCheckpoint()
        if let path { report(.checkpoint(step: session.step, path: path)) }
        return path
    }

    private func writeCheckpoint() throws -> String? {
        let session = self.session, state = self.state
        try store.synchronize()
        return try source.whileServing { try session.writeCheckpoint(state: state) }
    }

    /// After a failure: keep what was completed (a checkpoint of the last completed step),
    /// release the source, and say where it is.
    private func failed(_ error: Error) -> Error {
        if session.options.checkpointDirectory != nil {
            do {
                if let path = try writeCheckpoint() { report(.message("wrote checkpoint \(path) at step \(session.step)")) }
            } catch {
                report(.message("could not write a checkpoint of step \(session.step): \(error)"))
            }
        }
        source.finish(reason: "\(error)")
        if case TrainingError.diverged(let step, let loss, _) = error {
            return TrainingError.diverged(step: step, loss: loss, lastCheckpoint: session.lastCheckpoint)
        }
        return error
    }
}
