import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// Validation loss (E = 1 and E > 1, the leftover rule) against computations by hand, and the
/// sampler's reproducibility, temperature and argmax.
final class EvaluatorSamplerTests: XCTestCase {
    typealias F = TrainingFixtures

    /// A small random model (Float parameters) and a token sequence over its vocabulary.
    struct Problem {
        let model: ModelConfig
        let parameters: [Float]
        let tokens: [Int32]

        init(cell: CellType, layers: Int = 2, hidden: Int = 4, vocabulary: Int = 6, length: Int, seed: UInt64) {
            model = ModelConfig(cell: cell, vocabularySize: vocabulary, hiddenSize: hidden, layerCount: layers)
            var random = FixtureRandom(seed: seed)
            parameters = (0..<ParameterLayout(model).count).map { _ in Float(random.uniform(0.8)) }
            tokens = (0..<length).map { _ in Int32(random.index(vocabulary)) }
        }

        func evaluate(window: Int, streams: Int) -> Evaluator.Result? {
            parameters.withUnsafeBufferPointer {
                Evaluator.evaluate(model: model, parameters: $0.baseAddress!, tokens: tokens, window: window, streams: streams)
            }
        }

        /// Summed loss in Double (the naive oracle) of predicting tokens[a+1 ... b] from
        /// tokens[a ..< b], from zero state.
        func referenceLoss(_ range: Range<Int>) -> Double {
            let zeros = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: model.hiddenSize), count: 1),
                                     count: model.layerCount)
            return NaiveReference.forward(config: model, parameters: parameters.map(Double.init),
                                          inputs: [range.map { Int(tokens[$0]) }], targets: [range.map { Int(tokens[$0 + 1]) }],
                                          h0: zeros, c0: zeros).lossSum
        }
    }

    // MARK: Evaluator

    /// E = 1: the mean of per-window losses through the network with carried state (exactly),
    /// which is the plain per-character loss of the whole text (Double oracle).
    func testOneStreamIsTheCarriedStateLossOfTheText() {
        for cell in CellType.allCases {
            let problem = Problem(cell: cell, length: 24, seed: 21)
            let T = 5
            let result = problem.evaluate(window: T, streams: 1)!
            XCTAssertEqual(result.characters, 23)

            // By hand: windows 5, 5, 5, 5, 3 through one network, state carried.
            let state = RecurrentState<Float>(config: problem.model, streams: 1)
            var total = 0.0, reset = 0.0
            var begin = 0
            while begin < 23 {
                let width = min(T, 23 - begin)
                let net = RecurrentNetwork<Float>(config: problem.model, streams: 1, window: width)
                for t in 0..<width {
                    net.inputs[t] = problem.tokens[begin + t]
                    net.targets[t] = problem.tokens[begin + t + 1]
                }
                problem.parameters.withUnsafeBufferPointer { w in
                    total += net.forward(parameters: w.baseAddress!, initialState: state.view)
                    net.copyFinalState(to: state.view)
                    let fresh = RecurrentState<Float>(config: problem.model, streams: 1)
                    reset += net.forward(parameters: w.baseAddress!, initialState: fresh.view)
                }
                begin += width
            }
            XCTAssertEqual(result.natsPerCharacter, total / 23, "\(cell): per-window losses with carried state")
            XCTAssertNotEqual(result.natsPerCharacter, reset / 23, "\(cell): fixture must tell carried from reset state")
            let oracle = problem.referenceLoss(0..<23) / 23
            XCTAssertEqual(result.natsPerCharacter, oracle, accuracy: 1e-5 * oracle, "\(cell): Double oracle")
            XCTAssertEqual(result.bitsPerCharacter, result.natsPerCharacter / log(2), accuracy: 1e-12)
        }
    }

    /// E > 1: segments of L = (n−1)/E targets from zero state, the leftover targets continuing
    /// the last segment; every target counted once.
    func testManyStreamsCountEveryTargetOnce() {
        // (length n, E, T): leftover 0 and T | L; leftover 2 and T ∤ L; leftover 4 > T;
        // E larger than the targets (clamped to n−1, L = 1).
        let cases = [(25, 4, 3), (24, 3, 3), (20, 5, 2), (5, 10, 4), (2, 3, 7)]
        for cell in CellType.allCases {
            for (n, streams, T) in cases {
                let problem = Problem(cell: cell, length: n, seed: UInt64(n * 100 + streams))
                let result = problem.evaluate(window: T, streams: streams)!
                XCTAssertEqual(result.characters, n - 1, "every target once: \(cell) n \(n) E \(streams)")
                let targets = n - 1, E = min(streams, targets), L = targets / E
                var expected = 0.0
                for s in 0..<E {
                    let end = s == E - 1 ? targets : (s + 1) * L   // the last segment takes the leftover
                    expected += problem.referenceLoss((s * L)..<end)
                }
                expected /= Double(targets)
                XCTAssertEqual(result.natsPerCharacter, expected, accuracy: 1e-5 * expected,
                               "\(cell) n \(n) E \(streams) T \(T)")
            }
        }
    }

    /// One window from zero state does not depend on E when there is one stream's worth of text,
    /// and nothing to predict gives nil.
    func testDegenerateInputs() {
        let problem = Problem(cell: .lstm, length: 1, seed: 3)
        XCTAssertNil(problem.evaluate(window: 4, streams: 1))
        let two = Problem(cell: .lstm, length: 2, seed: 3)
        XCTAssertEqual(two.evaluate(window: 4, streams: 1), two.evaluate(window: 1, streams: 5))
        XCTAssertEqual(two.evaluate(window: 4, streams: 1)!.characters, 1)
    }

    // MARK: Sampler

    /// A random GRU over a 12-symbol vocabulary.
    private func randomModel() -> (model: ModelConfig, vocabulary: Vocabulary, parameters: [Float]) {
        let vocabulary = Vocabulary(of: "\nabcdefghij ")
        let model = ModelConfig(cell: .gru, vocabularySize: vocabulary.count, hiddenSize: 8, layerCount: 2)
        var random = FixtureRandom(seed: 77)
        let parameters = (0..<ParameterLayout(model).count).map { _ in Float(random.uniform(1.5)) }
        return (model, vocabulary, parameters)
    }

    func testSameSeedSameTextOtherSeedOtherText() throws {
        let (model, vocabulary, parameters) = randomModel()
        func sample(seed: UInt64, temperature: Double = 1, prime: String = "ab") throws -> String {
            try Sampler(temperature: temperature, seed: seed)
                .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: prime, length: 200)
        }
        let a = try sample(seed: 3)
        XCTAssertEqual(a.unicodeScalars.count, 202)
        XCTAssertTrue(a.hasPrefix("ab"))
        XCTAssertEqual(try sample(seed: 3), a, "same seed, same text")
        XCTAssertNotEqual(try sample(seed: 4), a, "another seed, another text")
        XCTAssertNotEqual(try sample(seed: 3, temperature: 0.5), a, "the temperature changes the draw")
        XCTAssertNotEqual(try sample(seed: 3, prime: "ba").dropFirst(2), a.dropFirst(2), "the prime conditions the text")
        // A higher temperature spreads the draws: more distinct symbols, and fewer at a low one.
        let hot = Set(try sample(seed: 5, temperature: 20).unicodeScalars.dropFirst(2))
        let cold = Set(try sample(seed: 5, temperature: 0.05).unicodeScalars.dropFirst(2))
        XCTAssertGreaterThan(hot.count, cold.count)
        XCTAssertEqual(hot.count, vocabulary.count, "at temperature 20 every symbol shows up in 200 draws")
    }

    /// Argmax ignores the seed and is what a very low temperature converges to; it equals the
    /// most likely symbol computed step by step through the network.
    func testArgmaxIsTheMostLikelyPathAndTheColdLimit() throws {
        let (model, vocabulary, parameters) = randomModel()
        let greedy = try Sampler(argmax: true, seed: 1)
            .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "j", length: 40)
        XCTAssertEqual(try Sampler(argmax: true, seed: 999)
            .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "j", length: 40), greedy)
        XCTAssertEqual(try Sampler(temperature: 0.01, seed: 8)
            .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "j", length: 40), greedy)

        // By hand: feed the prime, then repeatedly the most probable symbol.
        let net = RecurrentNetwork<Float>(config: model, streams: 1, window: 1)
        let state = RecurrentState<Float>(config: model, streams: 1)
        var next = vocabulary.id(of: "j")!
        var ids: [Int32] = []
        parameters.withUnsafeBufferPointer { w in
            for _ in 0..<40 {
                net.inputs[0] = next
                net.targets[0] = 0
                net.forward(parameters: w.baseAddress!, initialState: state.view)
                net.copyFinalState(to: state.view)
                let p = Array(net.probabilities(stream: 0, step: 0))
                next = Int32(p.indices.max { p[$0] < p[$1] }!)
                ids.append(next)
            }
        }
        XCTAssertEqual(greedy, "j" + vocabulary.decode(ids))
    }

    /// `--temperature 0.001` is valid input: p^(1/T) must not underflow to all zeros (which
    /// would always pick the last symbol); the draw must still follow the most likely symbol.
    func testVeryLowTemperatureStillFollowsTheMostLikelySymbol() throws {
        let (model, vocabulary, parameters) = randomModel()
        let greedy = try Sampler(argmax: true)
            .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "j", length: 40)
        for temperature in [1e-3, 1e-4] {
            XCTAssertEqual(try Sampler(temperature: temperature, seed: 8)
                .sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "j", length: 40), greedy,
                "temperature \(temperature)")
        }
    }

    func testPrimeAndLengthEdges() throws {
        let (model, vocabulary, parameters) = randomModel()
        let sampler = Sampler(seed: 2)
        XCTAssertEqual(try sampler.sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "abc", length: 0), "abc")
        XCTAssertEqual(try sampler.sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "", length: 7)
            .unicodeScalars.count, 7)
        XCTAssertThrowsError(try sampler.sample(model: model, vocabulary: vocabulary, parameters: parameters, prime: "aZ", length: 3)) { error in
            XCTAssertEqual(error as? VocabularyError, .unknownCharacters(["Z"]))
        }
    }
}

/// A long evaluation reports its progress (issue 12): `.evaluating` events with growing
/// counts below the total, then the result.
final class EvaluationProgressTests: XCTestCase {
    func testEvaluationReportsProgressBeforeItsResult() throws {
        let corpus = TrainingFixtures.playCorpus(characters: 6_000)
        let config = TrainingFixtures.config(cell: .gru, hidden: 8, streams: 4, window: 8, chunkStreams: 2, steps: 2)
        var options = RunOptions()
        options.evaluationProgressInterval = 0   // every window
        let session = try TrainingSession(config: config, corpus: corpus, options: options)
        var events: [TrainingEvent] = []
        let loop = TrainingLoop(session: session, source: LocalGradientSource(plan: session.plan, threads: 1)) { events.append($0) }
        try loop.run()
        let progress = events.compactMap { event -> (Int, Int)? in
            if case .evaluating(_, let done, let total) = event { return (done, total) } else { return nil }
        }
        XCTAssertGreaterThan(progress.count, 10, "599 validation characters in windows of 8")
        XCTAssertEqual(progress.map(\.0), progress.map(\.0).sorted())
        XCTAssertTrue(progress.allSatisfy { $0.0 < $0.1 && $0.1 == session.evaluatedCharacters })
        let resultIndex = try XCTUnwrap(events.firstIndex { if case .evaluation = $0 { return true } else { return false } })
        let lastProgress = try XCTUnwrap(events.lastIndex { if case .evaluating = $0 { return true } else { return false } })
        XCTAssertLessThan(lastProgress, resultIndex)
    }
}
