import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// The in-process training loop end to end: determinism across threads and worker blocks,
/// exact resume, the coordinator step against hand-computed optimizer updates, clipping, the
/// divergence guard, and that small models actually learn.
final class TrainerTests: XCTestCase {
    typealias F = TrainingFixtures

    // MARK: Determinism

    /// K = 1, 2, 4 threads over the same chunks (batch 8, chunk 2) give bit-identical weights,
    /// losses and carried state after 5 steps.
    func testThreadCountsGiveBitIdenticalWeights() throws {
        let corpus = F.playCorpus(characters: 3_000)
        for cell in [CellType.lstm, .gru] {
            let config = F.config(cell: cell, layers: 2, hidden: 16, streams: 8, window: 8, chunkStreams: 2, steps: 5)
            var results: [(threads: Int, weights: [UInt32], losses: [UInt64], h: [UInt32], c: [UInt32])] = []
            for threads in [1, 2, 4] {
                var options = RunOptions()
                options.threads = threads
                let session = try TrainingSession(config: config, corpus: corpus, options: options)
                let (trainer, losses) = try F.runSteps(session)
                XCTAssertEqual((trainer.source as! LocalGradientSource).engine.threads, threads)
                XCTAssertEqual(losses.count, 5)
                let state = F.carriedState(trainer)
                results.append((threads, F.bits(session.update.values), F.bits(losses), F.bits(state.h), F.bits(state.c)))
            }
            let initial = ParameterInitializer.initialize(ParameterLayout(config.model(vocabularySize: corpus.vocabulary.count)),
                                                          seed: config.seed)
            XCTAssertNotEqual(results[0].weights, F.bits(initial), "\(cell): training did not move the weights")
            for r in results.dropFirst() {
                XCTAssertTrue(r.weights == results[0].weights, "\(cell): weights with K=\(r.threads) differ from K=1")
                XCTAssertEqual(r.losses, results[0].losses, "\(cell): losses with K=\(r.threads) differ from K=1")
                XCTAssertTrue(r.h == results[0].h && r.c == results[0].c, "\(cell): carried state with K=\(r.threads) differs")
            }
        }
    }

    /// Two engines over aligned stream blocks (as two workers), combined through the reduction
    /// tree, give bit for bit the gradient and loss of one engine over all streams.
    func testWorkerBlocksCombineToTheSingleEngineGradient() throws {
        let corpus = F.playCorpus(characters: 2_000)
        let config = F.config(cell: .lstm, hidden: 12, streams: 8, window: 5, chunkStreams: 2)
        let session = try TrainingSession(config: config, corpus: corpus, options: RunOptions())
        let parameters = UnsafePointer(session.update.parameters.baseAddress!)
        let count = session.layout.count
        func engine(_ streams: Range<Int>, threads: Int) -> GradientEngine {
            GradientEngine(config: session.model, data: session.plan.languageModel!,
                           streams: streams, chunkStreams: 2, threads: threads)
        }
        let whole = engine(0..<8, threads: 1)
        let blocks = [engine(0..<4, threads: 2), engine(4..<8, threads: 1)]
        let wholeState = RecurrentState<Float>(config: session.model, streams: 8)
        let blockStates = blocks.map { RecurrentState<Float>(config: session.model, streams: $0.streams.count) }
        // Two steps, so the second runs from carried state (each updated in place).
        for step in 0..<2 {
            let (wholeLoss, wholeGradient) = whole.computeGradient(parameters: parameters, step: step, stepInEpoch: step,
                                                                   from: wholeState, into: wholeState)
            let expected = Array(UnsafeBufferPointer(start: wholeGradient, count: count))
            let parts = zip(blocks, blockStates).map { engine, state in
                engine.computeGradient(parameters: parameters, step: step, stepInEpoch: step, from: state, into: state)
            }
            let top = ReductionTree(leaves: [0..<2, 2..<4], over: 0..<4)
            XCTAssertTrue(top.isAligned)
            top.sum(parts.map(\.gradient), count: count, threads: 1)
            let combined = Array(UnsafeBufferPointer(start: parts[0].gradient, count: count))
            XCTAssertEqual(F.bits(combined), F.bits(expected), "step \(step): combined worker gradient differs")
            XCTAssertEqual(top.sum(parts.map(\.lossSum)).bitPattern, wholeLoss.bitPattern, "step \(step): loss differs")
        }
    }

    // MARK: Resume

    /// LSTM (h and c carried) with Adam; resume falls in the middle of the first epoch.
    func testLSTMTenStepsEqualFiveResumeFive() throws {
        let corpus = F.playCorpus(characters: 4_000)
        let config = F.config(cell: .lstm, layers: 2, hidden: 12, streams: 4, window: 8, chunkStreams: 2)
        try assertResumeIsExact(config: config, corpus: corpus, expectedStepsPerEpoch: nil)
    }

    /// RNN with momentum on a corpus of 3 steps per epoch: the run resumes mid-epoch (step 5 is
    /// epoch 1, step 2) and crosses epoch boundaries (state reset) on both sides.
    func testRNNResumeAcrossEpochBoundaries() throws {
        let corpus = F.playCorpus(characters: 120)
        let config = F.config(cell: .rnn, hidden: 10, streams: 4, window: 8, chunkStreams: 1,
                              optimizer: OptimizerConfig(kind: .momentum, learningRate: 0.05))
        try assertResumeIsExact(config: config, corpus: corpus, expectedStepsPerEpoch: 3)
    }

    /// GRU with RMSprop and a learning rate halved every 3 steps, 4 steps per epoch (resume at
    /// epoch 1, step 1).
    func testGRUResumeWithDecayingRate() throws {
        let corpus = F.playCorpus(characters: 100)
        var config = F.config(cell: .gru, hidden: 6, streams: 2, window: 10, chunkStreams: 1,
                              optimizer: OptimizerConfig(kind: .rmsprop, learningRate: 0.01))
        config.learningRateDecayEvery = 3
        config.learningRateDecay = 0.5
        try assertResumeIsExact(config: config, corpus: corpus, expectedStepsPerEpoch: 4)
    }

    /// A run stopped right after a periodic checkpoint (here: the directory copied when step 6's
    /// checkpoint is reported, mid-epoch) resumes into the same 10 steps as the run that went on.
    func testResumeFromAPeriodicCheckpointOfAnUnfinishedRun() throws {
        let corpus = F.playCorpus(characters: 150)
        let config = F.config(cell: .lstm, hidden: 6, streams: 4, window: 8, chunkStreams: 2, steps: 10)
        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("live")
        options.checkpointEvery = 3
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        XCTAssertEqual(session.plan.stepsPerEpoch, 4, "fixture: step 6 is in the middle of epoch 1")
        let copy = directory.child("stopped")
        var checkpointSteps: [Int] = []
        var losses: [Double] = []
        let trainer = TrainingLoop(session: session, source: LocalGradientSource(plan: session.plan, threads: 1)) { event in
            switch event {
            case .checkpoint(let step, let path):
                checkpointSteps.append(step)
                if step == 6 {
                    try! FileManager.default.copyItem(at: URL(fileURLWithPath: path), to: copy)
                }
            case .step(let record): losses.append(record.loss)
            default: break
            }
        }
        try trainer.run()
        XCTAssertEqual(checkpointSteps, [3, 6, 9, 10])

        options.checkpointDirectory = copy
        options.resume = true
        let resumed = try TrainingSession(config: config, corpus: corpus, options: options)
        XCTAssertEqual(resumed.step, 6)
        let (_, resumedLosses, _) = try F.run(resumed)
        XCTAssertEqual(F.bits(resumedLosses), F.bits(Array(losses[6...])))
        XCTAssertEqual(F.bits(resumed.update.values), F.bits(session.update.values))
    }

    /// The data-layout contract: state is zero at each epoch start and carried within an epoch.
    /// The trainer's loss at the first step of epoch 1 equals a fresh engine's from zero state at
    /// the same weights, and differs from it in the middle of an epoch.
    func testStateIsZeroAtEpochStartAndCarriedWithin() throws {
        let corpus = F.playCorpus(characters: 150)
        let config = F.config(cell: .gru, hidden: 6, streams: 4, window: 8, chunkStreams: 2)
        for (steps, carried) in [(4, false), (2, true), (6, true)] {
            var before = config
            before.steps = steps
            let weights = try TrainingSession(config: before, corpus: corpus, options: RunOptions())
            try F.runSteps(weights)
            XCTAssertEqual(weights.plan.stepsPerEpoch, 4, "fixture")
            var after = config
            after.steps = steps + 1
            let session = try TrainingSession(config: after, corpus: corpus, options: RunOptions())
            let (trainer, losses) = try F.runSteps(session)
            // The same weights from zero state, at the same window.
            let fresh = GradientEngine(config: session.model, data: session.plan.languageModel!,
                                       streams: 0..<4, chunkStreams: 2, threads: 1)
            let zero = RecurrentState<Float>(config: session.model, streams: 4)
            let (freshSum, _) = weights.update.values.withUnsafeBufferPointer {
                fresh.computeGradient(parameters: $0.baseAddress!, step: steps, stepInEpoch: steps % 4, from: zero, into: zero)
            }
            let freshLoss = freshSum / Double(trainer.session.tokensPerStep)
            if carried {
                XCTAssertNotEqual(losses.last!, freshLoss, "step \(steps + 1) is mid-epoch: the state must be carried")
            } else {
                XCTAssertEqual(losses.last!.bitPattern, freshLoss.bitPattern, "step \(steps + 1) starts an epoch: zero state")
            }
        }
    }

    private func assertResumeIsExact(config base: TrainingConfig, corpus: Corpus, expectedStepsPerEpoch: Int?,
                                     file: StaticString = #filePath, line: UInt = #line) throws {
        var whole = base
        whole.steps = 10
        let straight = try TrainingSession(config: whole, corpus: corpus, options: RunOptions())
        if let expectedStepsPerEpoch {
            XCTAssertEqual(straight.plan.stepsPerEpoch, expectedStepsPerEpoch, "fixture", file: file, line: line)
        }
        let (straightTrainer, straightLosses, _) = try F.run(straight)

        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("run")
        var first = base
        first.steps = 5
        let firstSession = try TrainingSession(config: first, corpus: corpus, options: options)
        let (_, firstLosses, firstSummary) = try F.run(firstSession)
        XCTAssertEqual(firstSummary.checkpoint, options.checkpointDirectory!.path, file: file, line: line)

        options.resume = true
        let resumed = try TrainingSession(config: whole, corpus: corpus, options: options)
        XCTAssertEqual(resumed.step, 5, file: file, line: line)
        let (resumedTrainer, resumedLosses, _) = try F.run(resumed)

        XCTAssertEqual(resumed.step, 10, file: file, line: line)
        XCTAssertEqual(F.bits(firstLosses + resumedLosses), F.bits(straightLosses), "per-step losses", file: file, line: line)
        XCTAssertTrue(F.bits(resumed.update.values) == F.bits(straight.update.values),
                      "weights after 5 + resume + 5 differ from 10 straight steps", file: file, line: line)
        let a = F.carriedState(resumedTrainer), b = F.carriedState(straightTrainer)
        XCTAssertTrue(F.bits(a.h) == F.bits(b.h) && F.bits(a.c) == F.bits(b.c), "carried state", file: file, line: line)
        XCTAssertEqual(resumed.update.optimizer.stepCount, 10, file: file, line: line)
        for (x, y) in zip(resumed.update.optimizer.stateBuffers, straight.update.optimizer.stateBuffers) {
            XCTAssertEqual(x.name, y.name, file: file, line: line)
            XCTAssertTrue(F.bits(x.values) == F.bits(y.values), "optimizer buffer \(x.name)", file: file, line: line)
        }
    }

    // MARK: Coordinator step against hand computation

    /// The summed gradient of one step of a small model, as the engine computes it.
    private func engineGradient(cell: CellType = .rnn, parameters: [Float]? = nil, stepInEpoch: Int = 0)
        throws -> (session: TrainingSession, gradient: [Float], tokens: Int) {
        let corpus = F.playCorpus(characters: 600)
        let config = F.config(cell: cell, hidden: 5, streams: 4, window: 6, chunkStreams: 2)
        let session = try TrainingSession(config: config, corpus: corpus, options: RunOptions())
        let engine = GradientEngine(config: session.model, data: session.plan.languageModel!,
                                    streams: 0..<4, chunkStreams: 2, threads: 1)
        let w = parameters ?? session.update.values
        let zero = RecurrentState<Float>(config: session.model, streams: 4)
        let (_, g) = w.withUnsafeBufferPointer {
            engine.computeGradient(parameters: $0.baseAddress!, step: stepInEpoch, stepInEpoch: stepInEpoch, from: zero, into: zero)
        }
        return (session, Array(UnsafeBufferPointer(start: g, count: session.layout.count)), engine.tokensPerStep)
    }

    /// Two steps of every optimizer (the second with a decayed rate and the state of the first)
    /// through `ParameterUpdate`, against PyTorch's formulas evaluated here in Double from the
    /// engine's gradients.
    func testEveryOptimizerMatchesHandComputedSteps() throws {
        let (session, firstGradient, tokens) = try engineGradient()
        let initial = session.update.values
        let layout = session.layout
        let clip: Float = 50   // above the norm: no clipping here
        let schedule = LearningRateSchedule(base: 0.1, decayEvery: 1, decayFactor: 0.5)
        for kind in OptimizerKind.allCases {
            let optimizer = OptimizerConfig(kind: kind, learningRate: 0.1)
            let update = ParameterUpdate(layout: layout, optimizer: optimizer, schedule: schedule, clip: clip, initial: initial)
            var reference: [Double] = []
            var first = [Double](repeating: 0, count: layout.count), second = first
            var gradient = firstGradient
            for step in 0..<2 {
                // Hand computation: mean gradient, then the torch.optim rule with t = step + 1.
                let g = gradient.map { Double($0) / Double(tokens) }
                let norm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
                XCTAssertLessThan(norm, Double(clip), "fixture: clipping must not apply")
                let lr = 0.1 * pow(0.5, Double(step)), t = Double(step + 1)
                // Each step from the Float weights it starts from (the state buffers stay Double).
                let before = update.values
                reference = before.map(Double.init)
                for i in 0..<layout.count {
                    switch kind {
                    case .sgd:
                        reference[i] -= lr * g[i]
                    case .momentum:
                        first[i] = step == 0 ? g[i] : 0.9 * first[i] + g[i]
                        reference[i] -= lr * first[i]
                    case .adagrad:
                        first[i] += g[i] * g[i]
                        reference[i] -= lr * g[i] / (first[i].squareRoot() + 1e-10)
                    case .rmsprop:
                        first[i] = 0.99 * first[i] + 0.01 * g[i] * g[i]
                        reference[i] -= lr * g[i] / (first[i].squareRoot() + 1e-8)
                    case .adam:
                        first[i] = 0.9 * first[i] + 0.1 * g[i]
                        second[i] = 0.999 * second[i] + 0.001 * g[i] * g[i]
                        let mHat = first[i] / (1 - pow(0.9, t))
                        let denominator = (second[i] / (1 - pow(0.999, t))).squareRoot() + 1e-8
                        reference[i] -= lr * mHat / denominator
                    }
                }
                var sum = gradient
                let report = sum.withUnsafeMutableBufferPointer {
                    update.apply(gradientSum: $0.baseAddress!, tokenCount: tokens, step: step)
                }
                XCTAssertEqual(report.learningRate, Float(lr))
                XCTAssertEqual(report.gradientNorm, norm, accuracy: 1e-6 * norm)
                let actual = update.values
                // Relative to the operands of the Float sum p + Δ (its rounding is an ulp of the larger).
                var worst = 0.0, worstIndex = 0
                for i in 0..<layout.count {
                    let scale = max(abs(reference[i]), abs(Double(before[i])), abs(reference[i] - Double(before[i])), 1e-6)
                    let error = abs(Double(actual[i]) - reference[i]) / scale
                    if error > worst { (worst, worstIndex) = (error, i) }
                }
                XCTAssertLessThan(worst, 1e-6, "\(kind) step \(step + 1): parameter \(worstIndex) is \(actual[worstIndex]), expected \(reference[worstIndex])")
                XCTAssertNotEqual(actual, initial, "\(kind): nothing moved")
                // The next step's gradient at the updated weights (another window).
                if step == 0 { gradient = try engineGradient(parameters: actual, stepInEpoch: 1).gradient }
            }
        }
    }

    /// A small threshold scales the mean gradient to exactly that norm, along the same
    /// direction; SGD with lr 1 from zero weights exposes the applied gradient as −weights.
    func testClippingScalesTheGradientToTheThreshold() throws {
        let (session, gradient, tokens) = try engineGradient(cell: .lstm)
        let layout = session.layout
        let scale = 1 / Float(tokens)
        let mean = gradient.map { $0 * scale }
        let norm = mean.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertGreaterThan(norm, 1e-2, "fixture: gradient too small to clip meaningfully")
        let zeros = [Float](repeating: 0, count: layout.count)
        let sgd = OptimizerConfig(kind: .sgd, learningRate: 1)

        for threshold in [Float(norm / 10), Float(norm / 1000)] {
            let update = ParameterUpdate(layout: layout, optimizer: sgd, schedule: .constant(1), clip: threshold, initial: zeros)
            var sum = gradient
            let report = sum.withUnsafeMutableBufferPointer { update.apply(gradientSum: $0.baseAddress!, tokenCount: tokens, step: 0) }
            XCTAssertEqual(report.gradientNorm, norm, accuracy: 1e-9 * norm, "norm before clipping is reported")
            let applied = update.values.map { -Double($0) }
            let after = applied.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(after, Double(threshold), accuracy: 1e-5 * Double(threshold), "norm after clipping")
            // Same direction: every component scaled by the same coefficient.
            let coefficient = Double(threshold) / (norm + 1e-6)
            for i in 0..<layout.count where mean[i] != 0 {
                XCTAssertEqual(applied[i] / Double(mean[i]), coefficient, accuracy: 1e-6 * coefficient, "component \(i)")
            }
        }

        // Above the norm nothing is scaled: the applied gradient is exactly the mean (compared as
        // values: 0 + (−1)·0 is +0 where −mean is −0).
        let loose = ParameterUpdate(layout: layout, optimizer: sgd, schedule: .constant(1), clip: Float(norm * 2), initial: zeros)
        var sum = gradient
        _ = sum.withUnsafeMutableBufferPointer { loose.apply(gradientSum: $0.baseAddress!, tokenCount: tokens, step: 0) }
        XCTAssertTrue(loose.values == mean.map { -$0 }, "unclipped gradient changed")
    }

    // MARK: Divergence guard

    /// SGD at lr 1e4 without clipping explodes; the run stops with `diverged`, names the last
    /// checkpoint, and keeps the last finite weights (those of that checkpoint).
    func testHugeLearningRateStopsWithDivergedAndKeepsGoodWeights() throws {
        let corpus = F.playCorpus(characters: 2_000)
        let config = F.config(cell: .rnn, hidden: 8, streams: 4, window: 8, chunkStreams: 2, steps: 20,
                              optimizer: OptimizerConfig(kind: .sgd, learningRate: 1e4), clip: 0)
        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("ckpt")
        options.checkpointEvery = 1
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        XCTAssertThrowsError(try F.run(session)) { error in
            guard case TrainingError.diverged(let step, let loss, let last)? = error as? TrainingError else {
                return XCTFail("expected TrainingError.diverged, got \(error)")
            }
            XCTAssertEqual(step, session.step + 1, "the failing step is the one after the last applied")
            XCTAssertGreaterThanOrEqual(step, 2)
            XCTAssertTrue(!loss.isFinite || loss >= 3 * log(Double(session.model.vocabularySize)) + 1, "loss \(loss)")
            XCTAssertEqual(last, options.checkpointDirectory!.path)
            XCTAssertTrue("\(error)".contains(options.checkpointDirectory!.path), "\(error)")
        }
        let weights = session.update.values
        XCTAssertTrue(weights.allSatisfy(\.isFinite), "weights were overwritten with non-finite values")
        let saved = try Checkpoint.read(from: options.checkpointDirectory!)
        XCTAssertEqual(saved.training?.step, session.step)
        XCTAssertEqual(F.bits(saved.parameters), F.bits(weights), "weights are those of the last good checkpoint")
    }

    /// A non-finite gradient, loss or carried state is refused before the optimizer touches
    /// the weights, and the loop names the checkpoint it then holds.
    func testNonFiniteGradientLossOrStateIsRefusedAndNothingChanges() throws {
        let corpus = F.playCorpus(characters: 600)
        for poison in ["gradient", "loss", "state"] {
            let directory = TemporaryDirectory()
            var options = RunOptions()
            options.checkpointDirectory = directory.child("ckpt")
            let session = try TrainingSession(config: F.config(), corpus: corpus, options: options)
            let before = session.update.values
            let source = ScriptedSource(parameterCount: session.layout.count, tokens: session.tokensPerStep)
            source.poison = poison
            let loop = TrainingLoop(session: session, source: source) { _ in }
            XCTAssertThrowsError(try loop.run()) { error in
                guard case TrainingError.diverged(step: 1, _, let last)? = error as? TrainingError else {
                    return XCTFail("\(poison): expected diverged at step 1, got \(error)")
                }
                XCTAssertEqual(last, options.checkpointDirectory!.path, "\(poison): the error names the checkpoint written")
            }
            XCTAssertEqual(session.step, 0, poison)
            XCTAssertEqual(session.update.optimizer.stepCount, 0, poison)
            XCTAssertEqual(F.bits(session.update.values), F.bits(before), poison)
            XCTAssertEqual(source.finished.count, 1, "\(poison): the source is released once")
            let saved = try Checkpoint.read(from: options.checkpointDirectory!)
            XCTAssertTrue(saved.training!.hiddenH.allSatisfy(\.isFinite), "\(poison): the saved state is the last good one")
        }
    }

    /// A final checkpoint that cannot be written (its parent is a file) ends the run with that
    /// error, and the source is still released (workers are told, not left to time out).
    func testAFailedFinalCheckpointStillReleasesTheSource() throws {
        let corpus = F.playCorpus(characters: 600)
        let directory = TemporaryDirectory()
        let blocker = directory.child("file")
        try Data("x".utf8).write(to: blocker)
        var options = RunOptions()
        options.checkpointDirectory = blocker.appendingPathComponent("ckpt")
        let session = try TrainingSession(config: F.config(steps: 2), corpus: corpus, options: options)
        let source = ScriptedSource(parameterCount: session.layout.count, tokens: session.tokensPerStep)
        var messages: [String] = []
        let loop = TrainingLoop(session: session, source: source) { event in
            if case .message(let text) = event { messages.append(text) }
        }
        XCTAssertThrowsError(try loop.run())
        XCTAssertEqual(source.finished.count, 1, "the source must be released after a failed checkpoint")
        XCTAssertTrue(messages.contains { $0.hasPrefix("could not write a checkpoint of step 2") }, "\(messages)")
    }

    /// A stop request ends the run at the next step boundary with a checkpoint of the last
    /// completed step, and the source is told why.
    func testStopRequestCheckpointsTheLastCompletedStep() throws {
        let corpus = F.playCorpus(characters: 600)
        let directory = TemporaryDirectory()
        var options = RunOptions()
        options.checkpointDirectory = directory.child("ckpt")
        let session = try TrainingSession(config: F.config(steps: 10), corpus: corpus, options: options)
        let source = ScriptedSource(parameterCount: session.layout.count, tokens: session.tokensPerStep)
        let stop = StopRequest()
        let loop = TrainingLoop(session: session, source: source, stop: stop) { event in
            if case .step(let record) = event, record.step == 3 { stop.request("test stop", exitCode: 130) }
        }
        XCTAssertThrowsError(try loop.run()) { error in
            XCTAssertEqual(error as? StopRequest.Stopped, StopRequest.Stopped(reason: "test stop", exitCode: 130))
        }
        XCTAssertEqual(try Checkpoint.read(from: options.checkpointDirectory!).training?.step, 3)
        XCTAssertEqual(source.finished, ["test stop"])
    }

    // MARK: Learning

    /// A repetitive ~2.5 KB text: 250 steps drive the training loss far below ln V (the loss of
    /// a uniform guess).
    func testTinyCorpusLossFallsWellBelowLogV() throws {
        let line = "the quick brown fox jumps over the lazy dog; "
        let corpus = Corpus(text: String(repeating: line, count: 56), name: "fox")
        let config = F.config(cell: .lstm, hidden: 32, streams: 8, window: 16, chunkStreams: 4, steps: 250,
                              optimizer: OptimizerConfig(kind: .adam, learningRate: 1e-2))
        var options = RunOptions()
        options.threads = 2
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        let (_, losses, summary) = try F.run(session)
        let logV = log(Double(corpus.vocabulary.count))
        XCTAssertEqual(losses[0], logV, accuracy: 0.3, "starts near a uniform guess")
        let final = try XCTUnwrap(summary.finalTrainLoss)
        XCTAssertLessThan(final, 0.5 * logV, "final train loss \(final), ln V = \(logV)")
        let validation = try XCTUnwrap(summary.validation)
        XCTAssertLessThan(validation.natsPerCharacter, 0.5 * logV, "validation loss")
    }

    /// The classic: an RNN of 3 hidden units trained on "hello" continues "hell" with "o"
    /// (which needs memory: "l" is followed by "l" once and by "o" once).
    func testHelloWithThreeHiddenUnitsRNN() throws {
        try assertLearnsHello(cell: .rnn)
    }

    func testHelloWithThreeHiddenUnitsLSTM() throws {
        try assertLearnsHello(cell: .lstm)
    }

    private func assertLearnsHello(cell: CellType, file: StaticString = #filePath, line: UInt = #line) throws {
        let corpus = Corpus(text: String(repeating: "hello", count: 20), name: "hello")
        let config = F.config(cell: cell, hidden: 3, streams: 1, window: 4, chunkStreams: 1, steps: 300,
                              optimizer: OptimizerConfig(kind: .adam, learningRate: 0.05), validationFraction: 0)
        let session = try TrainingSession(config: config, corpus: corpus, options: RunOptions())
        try F.runSteps(session)
        let sampler = Sampler(argmax: true)
        let parameters = session.update.values
        let continued = try sampler.sample(model: session.model, vocabulary: corpus.vocabulary, parameters: parameters,
                                           prime: "hell", length: 1)
        XCTAssertEqual(continued, "hello", "\(cell)", file: file, line: line)
        let longer = try sampler.sample(model: session.model, vocabulary: corpus.vocabulary, parameters: parameters,
                                        prime: "he", length: 8)
        XCTAssertEqual(longer, "hellohello", "\(cell)", file: file, line: line)
    }
}

/// A gradient source that returns a fixed small gradient, or poisons one thing on purpose.
private final class ScriptedSource: GradientSource {
    let gradient: UnsafeMutablePointer<Float>
    let count: Int
    let tokens: Int
    var poison: String?
    var finished: [String] = []

    init(parameterCount: Int, tokens: Int) {
        count = parameterCount
        self.tokens = tokens
        gradient = .allocate(capacity: parameterCount)
    }

    deinit { gradient.deallocate() }

    var mode: String { "scripted" }
    func start(step: Int, state: CarriedState) throws {}

    func gradient(for request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient {
        gradient.update(repeating: 0.5, count: count)
        next.copy(from: state)
        var lossSum = Double(tokens)
        switch poison {
        case "gradient": gradient[3] = .nan
        case "loss": lossSum = .nan
        case "state": next.setValues("h", [Float](repeating: .nan, count: next.recurrent.count))
        default: break
        }
        return StepGradient(lossSum: lossSum, gradientSum: gradient, tokenCount: tokens, computeSeconds: 0)
    }

    func whileServing<T>(_ work: @escaping () throws -> T) throws -> T { try work() }
    func finish(reason: String) { finished.append(reason) }
}
