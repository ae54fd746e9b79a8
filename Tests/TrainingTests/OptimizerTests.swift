import XCTest
import Training

/// Three steps of every optimizer on 11 parameters (more than one SIMD vector, plus a tail),
/// against (a) the `torch.optim` formulas evaluated in Double here and (b) numbers printed by
/// torch 2.15 (CPU, `foreach=False`) for the same inputs, embedded as literals.
final class OptimizerTests: XCTestCase {
    static let initial: [Float] = [0.5, -1.25, 2.0, 0.0, 0.003, -0.75, 1.0, 10.0, -3.5, 0.25, 7.0]
    static let gradients: [[Float]] = [
        [0.1, -0.2, 0.3, 1.5, -0.001, 0.0, 2.0, -4.0, 0.25, 1e-4, -0.6],
        [0.05, 0.4, -0.3, 1.0, 0.002, 0.5, -2.0, -3.0, 0.125, -1e-4, 0.7],
        [-0.2, 0.1, 0.3, -1.5, 0.0, -0.5, 1.0, 5.0, 0.5, 2e-4, -0.8],
    ]

    /// Parameters after steps 1, 2, 3, as printed by torch (lr 0.1 for SGD, 0.01 with momentum 0.9,
    /// torch defaults for the rest).
    static let torchResults: [OptimizerKind: [[Float]]] = [
        .sgd: [
            [0.49, -1.23, 1.97, -0.15, 0.0031, -0.75, 0.8, 10.4, -3.525, 0.24999, 7.06],
            [0.485, -1.27, 2.0, -0.25, 0.0029, -0.8, 1.0, 10.7, -3.5375001, 0.25, 6.99],
            [0.505, -1.28, 1.97, -0.099999994, 0.0029, -0.75, 0.9, 10.2, -3.5875, 0.24998, 7.0699997],
        ],
        .momentum: [
            [0.499, -1.248, 1.997, -0.015, 0.00301, -0.75, 0.98, 10.04, -3.5025, 0.249999, 7.006],
            [0.49760002, -1.2502, 1.9973, -0.0385, 0.002999, -0.755, 0.982, 10.106, -3.506, 0.2499991, 7.0044003],
            [0.49834, -1.25318, 1.99457, -0.044649996, 0.0029891, -0.7545, 0.9738, 10.1154, -3.5141501, 0.2499972, 7.01096],
        ],
        .adagrad: [
            [0.49, -1.24, 1.99, -0.01, 0.012999998, -0.75, 0.99, 10.01, -3.51, 0.24000001, 7.01],
            [0.48552787, -1.2489443, 1.997071, -0.015547002, 0.0040557263, -0.76, 0.9970711, 10.016, -3.514472, 0.24707107, 7.0024076],
            [0.4942566, -1.2511264, 1.9912975, -0.00915098, 0.0040557263, -0.7529289, 0.99373776, 10.008928, -3.5232008, 0.23890612, 7.008961],
        ],
        .rmsprop: [
            [0.4000001, -1.1500001, 1.9000001, -0.09999999, 0.10299, -0.75, 0.90000004, 10.1, -3.6, 0.1500999, 7.1],
            [0.3550988, -1.2395324, 1.9708881, -0.15566301, 0.013461709, -0.84999996, 0.97088814, 10.160193, -3.6449013, 0.22093782, 7.023913],
            [0.44257274, -1.2614797, 1.9128633, -0.09138191, 0.013461709, -0.77911186, 0.9373311, 10.089192, -3.7323751, 0.13911745, 7.0897183],
        ],
        .adam: [
            [0.499, -1.249, 1.999, -0.0009999999, 0.00399999, -0.75, 0.999, 10.001, -3.501, 0.2490001, 7.001],
            [0.49806783, -1.249366, 1.9990526, -0.0019703521, 0.0036338887, -0.75074416, 0.99905264, 10.001983, -3.5019321, 0.24905273, 7.0008707],
            [0.49827418, -1.2497817, 1.9987168, -0.0021379564, 0.0033508916, -0.750699, 0.99887794, 10.002068, -3.5028412, 0.24855453, 7.001214],
        ],
    ]

    /// Parameters after each of the three steps, computed by `Optimizer`.
    static func run(_ optimizer: Optimizer, from start: [Float] = initial,
                    gradients: [[Float]] = gradients) -> [[Float]] {
        var parameters = start
        var snapshots: [[Float]] = []
        for g in gradients {
            parameters.withUnsafeMutableBufferPointer { p in
                g.withUnsafeBufferPointer { optimizer.step(parameters: p, gradient: $0, learningRate: optimizer.config.learningRate) }
            }
            snapshots.append(parameters)
        }
        return snapshots
    }

    /// The torch.optim update rules, written plainly in Double (independent of the Float kernels).
    static func reference(_ config: OptimizerConfig) -> [[Double]] {
        var p = initial.map(Double.init)
        var s1 = [Double](repeating: 0, count: p.count), s2 = s1
        let lr = Double(config.learningRate), eps = config.epsilon
        var snapshots: [[Double]] = []
        for (t, gradient) in gradients.enumerated() {
            for i in p.indices {
                let g = Double(gradient[i])
                switch config.kind {
                case .sgd:
                    p[i] -= lr * g
                case .momentum:
                    s1[i] = t == 0 ? g : config.momentum * s1[i] + g
                    p[i] -= lr * s1[i]
                case .adagrad:
                    s1[i] += g * g
                    p[i] -= lr * g / (s1[i].squareRoot() + eps)
                case .rmsprop:
                    s1[i] = config.alpha * s1[i] + (1 - config.alpha) * g * g
                    p[i] -= lr * g / (s1[i].squareRoot() + eps)
                case .adam:
                    let step = Double(t + 1)
                    s1[i] = config.beta1 * s1[i] + (1 - config.beta1) * g
                    s2[i] = config.beta2 * s2[i] + (1 - config.beta2) * g * g
                    let stepSize = lr / (1 - pow(config.beta1, step))
                    let denom = s2[i].squareRoot() / (1 - pow(config.beta2, step)).squareRoot() + eps
                    p[i] -= stepSize * s1[i] / denom
                }
            }
            snapshots.append(p)
        }
        return snapshots
    }

    /// |actual - expected| ≤ 1e-6 · max(|expected|, 1e-2): relative, with a floor for values that
    /// pass near zero (a Float carries absolute error of its step size, not of the tiny result).
    func assertClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 1e-6, _ message: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            let error = abs(Double(a) - e), bound = tolerance * max(abs(e), 1e-2)
            XCTAssertLessThanOrEqual(error, bound, "\(message) [\(i)]: \(a) vs \(e)", file: file, line: line)
        }
    }

    func testEveryKindMatchesDoubleReferenceForOneAndThreeSteps() {
        for kind in OptimizerKind.allCases {
            let config = OptimizerConfig(kind: kind)
            let got = Self.run(Optimizer(config: config, parameterCount: Self.initial.count))
            let want = Self.reference(config)
            assertClose(got[0], want[0], "\(kind) step 1")
            assertClose(got[2], want[2], "\(kind) step 3")
        }
    }

    /// PyTorch's kernels fuse multiply-adds (addcmul's `s + g·g` is one FMA) and ours do not, so a
    /// few elements differ by one or two ulps (most agree bit for bit); a wrong formula would miss
    /// by orders of magnitude more.
    func testEveryKindMatchesTorchNumbersWithinTwoUlps() {
        for kind in OptimizerKind.allCases {
            // The torch numbers were made at torch.optim's defaults (Adam: 1e-3, not Recur's 2e-3).
            let config = OptimizerConfig(kind: kind, learningRate: kind == .adam ? 1e-3 : nil)
            let got = Self.run(Optimizer(config: config, parameterCount: Self.initial.count))
            for step in 0..<3 {
                let want = Self.torchResults[kind]![step]
                for i in want.indices {
                    XCTAssertLessThanOrEqual(abs(got[step][i] - want[i]), 2 * want[i].ulp,
                                             "\(kind) vs torch, step \(step + 1) [\(i)]: \(got[step][i]) vs \(want[i])")
                }
            }
        }
    }

    func testStepCountAndStateBufferNames() {
        let expected: [OptimizerKind: [String]] = [
            .sgd: [], .momentum: ["momentum_buffer"], .adagrad: ["sum"], .rmsprop: ["square_avg"],
            .adam: ["exp_avg", "exp_avg_sq"],
        ]
        for kind in OptimizerKind.allCases {
            let optimizer = Optimizer(config: OptimizerConfig(kind: kind), parameterCount: Self.initial.count)
            _ = Self.run(optimizer)
            XCTAssertEqual(optimizer.stepCount, 3)
            XCTAssertEqual(optimizer.stateBuffers.map(\.name), expected[kind])
            XCTAssertTrue(optimizer.stateBuffers.allSatisfy { $0.values.count == Self.initial.count })
        }
    }

    func testAdamStateAfterOneStepIsTheMoments() {
        let optimizer = Optimizer(config: OptimizerConfig(kind: .adam), parameterCount: Self.initial.count)
        _ = Self.run(optimizer, gradients: [Self.gradients[0]])
        let state = optimizer.stateBuffers
        for i in Self.initial.indices {
            let g = Double(Self.gradients[0][i])
            XCTAssertEqual(Double(state[0].values[i]), 0.1 * g, accuracy: 1e-7 * abs(g))
            XCTAssertEqual(Double(state[1].values[i]), 0.001 * g * g, accuracy: 1e-6 * g * g + 1e-30)
        }
    }

    /// Resume: a fresh optimizer restored from the state after step 1 continues exactly as the
    /// uninterrupted one (bit for bit).
    func testRestoreContinuesExactly() throws {
        for kind in OptimizerKind.allCases {
            let config = OptimizerConfig(kind: kind)
            let whole = Self.run(Optimizer(config: config, parameterCount: Self.initial.count))

            let first = Optimizer(config: config, parameterCount: Self.initial.count)
            let afterOne = Self.run(first, gradients: [Self.gradients[0]])[0]
            let resumed = Optimizer(config: config, parameterCount: Self.initial.count)
            try resumed.restore(stepCount: first.stepCount, buffers: first.stateBuffers)
            let rest = Self.run(resumed, from: afterOne, gradients: Array(Self.gradients[1...]))
            XCTAssertEqual(rest[1], whole[2], "\(kind)")
            XCTAssertEqual(resumed.stepCount, 3)
        }
    }

    func testRestoreRejectsMismatchedState() {
        let adam = Optimizer(config: OptimizerConfig(kind: .adam), parameterCount: 4)
        XCTAssertThrowsError(try adam.restore(stepCount: 1, buffers: [("sum", [0, 0, 0, 0])])) { error in
            XCTAssertEqual(error as? OptimizerStateError,
                           .wrongBufferNames(kind: .adam, expected: ["exp_avg", "exp_avg_sq"], found: ["sum"]))
        }
        XCTAssertThrowsError(try adam.restore(stepCount: 1, buffers: [("exp_avg", [0, 0, 0, 0]), ("exp_avg_sq", [0, 0])])) { error in
            XCTAssertEqual(error as? OptimizerStateError, .wrongBufferSize(name: "exp_avg_sq", expected: 4, found: 2))
            XCTAssertTrue("\(error)".contains("exp_avg_sq"))
        }
        XCTAssertThrowsError(try adam.restore(stepCount: -1, buffers: [("exp_avg", [0, 0, 0, 0]), ("exp_avg_sq", [0, 0, 0, 0])]))
        XCTAssertEqual(adam.stepCount, 0, "a failed restore changes nothing")
    }

    func testConfigDefaultsAndCoding() throws {
        XCTAssertEqual(OptimizerConfig(kind: .adam).learningRate, 2e-3, "Recur's Adam default (char-rnn's)")
        XCTAssertEqual(TrainingConfig().optimizer, OptimizerConfig(kind: .adam), "one source for the default")
        XCTAssertEqual(OptimizerConfig(kind: .adagrad).epsilon, 1e-10)
        XCTAssertEqual(OptimizerConfig(kind: .rmsprop).alpha, 0.99)
        XCTAssertEqual(OptimizerConfig(kind: .sgd, learningRate: 0.5).learningRate, 0.5)
        let config = OptimizerConfig(kind: .momentum, learningRate: 0.02, momentum: 0.8)
        let decoded = try JSONDecoder().decode(OptimizerConfig.self, from: JSONEncoder().encode(config))
        XCTAssertEqual(decoded, config)
        XCTAssertEqual(OptimizerKind(rawValue: "rmsprop"), .rmsprop)
    }
}
