import XCTest
import Training

final class GradientClippingTests: XCTestCase {
    func norm(_ values: [Float]) -> Double {
        values.withUnsafeBufferPointer { GradientClipping.globalNorm($0) }
    }

    func testNormOfKnownVectors() {
        XCTAssertEqual(norm([3, 4]), 5)
        XCTAssertEqual(norm([]), 0)
        // 1..20: sum of squares 2870, spans two SIMD blocks and a tail.
        XCTAssertEqual(norm((1...20).map(Float.init)), 2870.0.squareRoot(), accuracy: 1e-12)
        // Accumulating in Double keeps tiny and huge squares: 1e-30² underflows Float.
        XCTAssertEqual(norm([Float](repeating: 1e-30, count: 100)), 1e-29, accuracy: 1e-36)
    }

    func testNormDoesNotDependOnAlignment() {
        let values = (0..<37).map { Float(sin(Double($0)) * 3) }
        let padded = [0] + values
        let a = norm(values)
        let b = padded.withUnsafeBufferPointer { GradientClipping.globalNorm(UnsafeBufferPointer(rebasing: $0[1...])) }
        XCTAssertEqual(a, b)
    }

    func testClipScalesToMaxNorm() {
        var g = (0..<29).map { Float($0 % 7) - 3 }
        let before = norm(g)
        let result = g.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 1.5) }
        XCTAssertTrue(result.scaled)
        XCTAssertEqual(result.normBefore, before)
        XCTAssertEqual(norm(g), 1.5, accuracy: 1.5 * 1e-6)
    }

    func testBelowThresholdOrOffNothingChanges() {
        let original: [Float] = [0.3, -0.4, 0.0, 1e-3]
        var g = original
        let below = g.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 5) }
        XCTAssertFalse(below.scaled)
        XCTAssertEqual(g, original)

        var big: [Float] = [300, -400]
        let off = big.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 0) }
        XCTAssertEqual(off.normBefore, 500)
        XCTAssertFalse(off.scaled)
        XCTAssertEqual(big, [300, -400])
    }

    func testNonFiniteNormIsReportedNotScaled() {
        var g: [Float] = [1, .nan, 2]
        let result = g.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 1) }
        XCTAssertTrue(result.normBefore.isNaN)
        XCTAssertFalse(result.scaled)
        XCTAssertEqual(g[2], 2)
    }
}

final class LearningRateScheduleTests: XCTestCase {
    func testConstant() {
        let schedule = LearningRateSchedule.constant(0.01)
        XCTAssertEqual(schedule.rate(atStep: 0), 0.01)
        XCTAssertEqual(schedule.rate(atStep: 123_456), 0.01)
    }

    func testStepDecayLikeStepLR() {
        let schedule = LearningRateSchedule(base: 0.1, decayEvery: 3, decayFactor: 0.5)
        let rates = (0..<10).map { schedule.rate(atStep: $0) }
        let expected: [Float] = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
        XCTAssertEqual(rates, expected)
        // Closed form: step 30 is the tenth decay.
        XCTAssertEqual(schedule.rate(atStep: 30), Float(0.1 * pow(0.5, 10.0)))
    }

    func testCoding() throws {
        let schedule = LearningRateSchedule(base: 2e-3, decayEvery: 1000, decayFactor: 0.97)
        let decoded = try JSONDecoder().decode(LearningRateSchedule.self, from: JSONEncoder().encode(schedule))
        XCTAssertEqual(decoded, schedule)
    }
}
