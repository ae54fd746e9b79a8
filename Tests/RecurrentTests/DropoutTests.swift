import Foundation
import Recurrent
import TestSupport
import XCTest

/// Dropout between layers and before the head: gradient-checked with fixed masks (the masks of
/// one position are the same for every call), PyTorch's inverted scaling, off without a
/// position, and masks that follow the global stream, not the workspace.
final class DropoutTests: XCTestCase {
    static let dropout = Dropout(probability: 0.3, seed: 42)
    static let position = Dropout.Position(step: 17, firstStream: 5)

    /// Central differences on every weight with the masks of one position, every cell, one
    /// and two layers (one layer: dropout before the head only).
    func testGradientCheckWithFixedMasks() {
        let epsilon = 1e-5
        for config in CellTests.configs {
            let problem = CellProblem(config: config, streams: 2, window: 4, seed: 9)
            let analytic = CoreRunner.run(problem, as: Double.self, dropout: Self.dropout, position: Self.position)
            let plain = CoreRunner.run(problem, as: Double.self)
            XCTAssertNotEqual(analytic.lossSum, plain.lossSum, "dropout changes the loss: \(config)")
            func loss(_ parameters: [Double]) -> Double {
                CoreRunner.run(problem, as: Double.self, parameters: parameters, dropout: Self.dropout, position: Self.position,
                               backward: false).lossSum
            }
            for slice in ParameterLayout(config).slices {
                var numeric: [Double] = []
                for i in slice.range {
                    var plus = problem.parameters, minus = problem.parameters
                    plus[i] += epsilon
                    minus[i] -= epsilon
                    numeric.append((loss(plus) - loss(minus)) / (2 * epsilon))
                }
                let error = CoreRunner.relativeError(Array(analytic.gradient[slice.range]), numeric)
                XCTAssertLessThan(error, 1e-6, "\(config.cell) L=\(config.layerCount) \(slice.name)")
            }
        }
    }

    /// Without a position (evaluation, sampling) a network with dropout computes exactly what
    /// one without dropout computes; the carried state never sees a mask.
    func testNoPositionMeansNoDropoutAndTheRecurrenceIsNotDropped() {
        for config in CellTests.configs {
            let problem = CellProblem(config: config, streams: 3, window: 5, seed: 4)
            let off = CoreRunner.run(problem, as: Double.self, dropout: Self.dropout)
            let plain = CoreRunner.run(problem, as: Double.self)
            XCTAssertEqual(off.lossSum, plain.lossSum)
            XCTAssertEqual(off.gradient, plain.gradient)
            // The final state of the top layer is the undropped recurrence only for one layer
            // (a lower layer's dropped output feeds the layer above).
            let on = CoreRunner.run(problem, as: Double.self, dropout: Self.dropout, position: Self.position)
            if config.layerCount == 1 { XCTAssertEqual(on.finalH, plain.finalH, "\(config)") }
        }
    }

    /// Masks: a fraction ≈ p of zeros, kept units 1/(1−p), the same for the same key, another
    /// for another step, stream, layer or time.
    func testMasksAreInvertedAndKeyed() {
        let H = 4096
        func mask(step: Int = 1, stream: Int = 2, layer: Int = 0, time: Int = 3) -> [Double] {
            var m = [Double](repeating: -1, count: H)
            m.withUnsafeMutableBufferPointer { Self.dropout.fill($0.baseAddress!, count: H, step: step, stream: stream, layer: layer, time: time) }
            return m
        }
        let m = mask()
        let zeros = m.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / Double(H), 0.3, accuracy: 0.03)
        XCTAssertTrue(m.allSatisfy { $0 == 0 || $0 == 1 / 0.7 })
        XCTAssertEqual(mask(), m)
        for other in [mask(step: 2), mask(stream: 3), mask(layer: 1), mask(time: 4)] { XCTAssertNotEqual(other, m) }
    }

    /// Streams 0..<4 in one workspace or as 0..<1 and 1..<4 in two (first streams 5 and 6):
    /// the same per-stream losses and summed gradients, bit for bit.
    func testMasksFollowTheGlobalStream() {
        let config = ModelConfig(cell: .lstm, vocabularySize: 5, hiddenSize: 4, layerCount: 2)
        let problem = CellProblem(config: config, streams: 4, window: 5, seed: 8)
        let whole = CoreRunner.run(problem, as: Float.self, dropout: Self.dropout, position: Self.position)
        var parts: [CoreResult<Float>] = []
        for (range, first) in [(0..<1, 5), (1..<4, 6)] {
            let piece = problem.subset(streams: range)
            parts.append(CoreRunner.run(piece, as: Float.self, dropout: Self.dropout,
                                        position: Dropout.Position(step: Self.position.step, firstStream: first)))
        }
        XCTAssertEqual(parts[0].lossSum + parts[1].lossSum, whole.lossSum, accuracy: 1e-9 * whole.lossSum)
        let summed = zip(parts[0].gradient, parts[1].gradient).map { $0 + $1 }
        XCTAssertLessThan(CoreRunner.relativeError(summed.map(Double.init), whole.gradient.map(Double.init)), 1e-6)
    }
}
