import Foundation
import Recurrent
import TestSupport
import XCTest

/// torch-rnn's three tests per cell (naive forward, gradient check, window split), for every
/// cell type and for one and two layers.
final class CellTests: XCTestCase {
    static let configs: [ModelConfig] = CellType.allCases.flatMap { cell in
        [1, 2].map { ModelConfig(cell: cell, vocabularySize: 5, hiddenSize: 4, layerCount: $0) }
    }

    func testForwardMatchesNaiveReferenceInDouble() {
        for config in Self.configs {
            let problem = CellProblem(config: config, streams: 3, window: 5, seed: 11)
            let core = CoreRunner.run(problem, as: Double.self, backward: false)
            let naive = NaiveReference.forward(config: config, parameters: problem.parameters,
                                               inputs: problem.inputs, targets: problem.targets,
                                               h0: problem.nested(problem.h0), c0: problem.nested(problem.c0))
            XCTAssertEqual(core.lossSum, naive.lossSum, accuracy: 1e-12 * naive.lossSum, "\(config)")
            XCTAssertLessThan(CoreRunner.relativeError(core.finalH, naive.h.flatMap { $0.flatMap { $0 } }), 1e-13, "\(config)")
            if config.cell == .lstm {
                XCTAssertLessThan(CoreRunner.relativeError(core.finalC, naive.c.flatMap { $0.flatMap { $0 } }), 1e-13)
            }
        }
    }

    func testFloatForwardAndGradientMatchDouble() {
        for config in Self.configs {
            let problem = CellProblem(config: config, streams: 3, window: 7, seed: 5)
            let single = CoreRunner.run(problem, as: Float.self)
            let double = CoreRunner.run(problem, as: Double.self)
            XCTAssertEqual(single.lossSum, double.lossSum, accuracy: 1e-5 * double.lossSum, "\(config)")
            XCTAssertLessThan(CoreRunner.relativeError(single.gradient.map(Double.init), double.gradient), 1e-5, "\(config)")
            XCTAssertLessThan(CoreRunner.relativeError(single.finalH.map(Double.init), double.finalH), 1e-5, "\(config)")
        }
    }

    /// Central differences on every scalar of every weight tensor and of h0 (and c0), in
    /// Double; the per-tensor relative error must be below 1e-6.
    func testGradientCheckEveryTensorAndInitialState() {
        let epsilon = 1e-5
        for config in Self.configs {
            let problem = CellProblem(config: config, streams: 2, window: 4, seed: 3)
            let analytic = CoreRunner.run(problem, as: Double.self)
            func loss(parameters: [Double]? = nil, h0: [Double]? = nil, c0: [Double]? = nil) -> Double {
                CoreRunner.run(problem, as: Double.self, parameters: parameters, h0: h0, c0: c0, backward: false).lossSum
            }
            for slice in ParameterLayout(config).slices {
                var numeric: [Double] = []
                for i in slice.range {
                    var plus = problem.parameters, minus = problem.parameters
                    plus[i] += epsilon
                    minus[i] -= epsilon
                    numeric.append((loss(parameters: plus) - loss(parameters: minus)) / (2 * epsilon))
                }
                let error = CoreRunner.relativeError(Array(analytic.gradient[slice.range]), numeric)
                XCTAssertLessThan(error, 1e-6, "\(config.cell) L=\(config.layerCount) \(slice.name)")
            }
            var numericH: [Double] = [], numericC: [Double] = []
            for i in problem.h0.indices {
                var plus = problem.h0, minus = problem.h0
                plus[i] += epsilon
                minus[i] -= epsilon
                numericH.append((loss(h0: plus) - loss(h0: minus)) / (2 * epsilon))
                if config.cell == .lstm {
                    var cPlus = problem.c0, cMinus = problem.c0
                    cPlus[i] += epsilon
                    cMinus[i] -= epsilon
                    numericC.append((loss(c0: cPlus) - loss(c0: cMinus)) / (2 * epsilon))
                }
            }
            XCTAssertLessThan(CoreRunner.relativeError(analytic.initialHGradient, numericH), 1e-6, "\(config) h0")
            if config.cell == .lstm {
                XCTAssertLessThan(CoreRunner.relativeError(analytic.initialCGradient, numericC), 1e-6, "\(config) c0")
            }
        }
    }

    /// One window of T = three windows of T/3 with the state carried between them.
    func testOneWindowEqualsThreeCarriedWindows() {
        for config in Self.configs {
            let T = 9
            let problem = CellProblem(config: config, streams: 2, window: T, seed: 17)
            let whole = CoreRunner.run(problem, as: Double.self, backward: false)
            var h = problem.h0, c = problem.c0, loss = 0.0
            for part in 0..<3 {
                var piece = CellProblem(config: config, streams: 2, window: T / 3, seed: 17)
                piece.parameters = problem.parameters
                piece.inputs = problem.inputs.map { Array($0[(part * 3)..<(part * 3 + 3)]) }
                piece.targets = problem.targets.map { Array($0[(part * 3)..<(part * 3 + 3)]) }
                let r = CoreRunner.run(piece, as: Double.self, h0: h, c0: c, backward: false)
                loss += r.lossSum
                h = r.finalH
                if config.cell == .lstm { c = r.finalC }
            }
            XCTAssertEqual(loss, whole.lossSum, accuracy: 1e-12 * whole.lossSum, "\(config)")
            XCTAssertLessThan(CoreRunner.relativeError(h, whole.finalH), 1e-13, "\(config)")
        }
    }

    /// Weight gradients can be split into chunks of streams inside one workspace; the chunks
    /// sum to the one-chunk gradient (up to summation order). Bit-identity across thread
    /// counts comes from fixed chunks per workspace, tested in TrainingTests.
    func testChunkGradientsSumToWholeGradient() {
        for cell in CellType.allCases {
            let config = ModelConfig(cell: cell, vocabularySize: 7, hiddenSize: 16, layerCount: 2)
            let problem = CellProblem(config: config, streams: 4, window: 6, seed: 23, scale: 0.3)
            let chunked = CoreRunner.run(problem, as: Double.self, chunkStreams: [0..<1, 1..<3, 3..<4])
            let whole = CoreRunner.run(problem, as: Double.self)
            XCTAssertLessThan(CoreRunner.relativeError(chunked.gradient, whole.gradient), 1e-14, "\(cell)")
            XCTAssertEqual(chunked.lossSum, whole.lossSum)
        }
    }

    /// With PyTorch's initialisation scale the untrained model is close to uniform.
    func testInitialLossIsNearLogV() {
        for cell in CellType.allCases {
            let config = ModelConfig(cell: cell, vocabularySize: 40, hiddenSize: 64, layerCount: 2)
            var problem = CellProblem(config: config, streams: 4, window: 16, seed: 99,
                                      scale: 1 / Double(config.hiddenSize).squareRoot())
            problem.h0 = problem.h0.map { _ in 0 }
            problem.c0 = problem.c0.map { _ in 0 }
            let r = CoreRunner.run(problem, as: Float.self, backward: false)
            let perToken = r.lossSum / Double(4 * 16)
            XCTAssertEqual(perToken, log(40.0), accuracy: 0.1, "\(cell)")
        }
    }
}
