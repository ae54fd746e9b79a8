import Foundation
import XCTest
import Training

/// Expected values come from an independent Python transcription of SplitMix64 and
/// xoshiro256** (Vigna's reference C); SplitMix64(0)'s first output is the published 0xE220A8397B1DCDAF.
final class SeededGeneratorTests: XCTestCase {
    func testSplitMixSeedingAndFirstOutputs() {
        var zero = SeededGenerator(seed: 0)
        XCTAssertEqual(zero.state, [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f, 0xf88bb8a8724c81ec])
        XCTAssertEqual((0..<4).map { _ in zero.next() },
                       [0x99ec5f36cb75f2b4, 0xbf6e1f784956452a, 0x1a5f849d4933e6e0, 0x6aa594f1262d2d2c])

        var answer = SeededGenerator(seed: 42)
        XCTAssertEqual((0..<4).map { _ in answer.next() },
                       [0x15780b2e0c2ec716, 0x6104d9866d113a7e, 0xae17533239e499a1, 0xecb8ad4703b360a1])
    }

    func testFloatingPointHelpers() {
        var floats = SeededGenerator(seed: 42)
        XCTAssertEqual((0..<3).map { _ in floats.nextUniformFloat() },
                       [0.08386296033859253, 0.37898021936416626, 0.6800433993339539])
        var doubles = SeededGenerator(seed: 42)
        XCTAssertEqual((0..<3).map { _ in doubles.nextDouble() },
                       [0.08386297105988216, 0.3789802506626686, 0.6800434110281394])
        var ranged = SeededGenerator(seed: 42)
        XCTAssertEqual(ranged.nextUniform(in: -1...1), -1 + 2 * Float(0.08386296033859253))

        var many = SeededGenerator(seed: 3)
        for _ in 0..<10_000 {
            let f = many.nextUniformFloat(), d = many.nextDouble(), r = many.nextUniform(in: -0.5...0.25)
            XCTAssert(f >= 0 && f < 1 && d >= 0 && d < 1 && r >= -0.5 && r <= 0.25)
        }
    }

    func testNextIntBelow() {
        var generator = SeededGenerator(seed: 7)
        XCTAssertEqual((0..<10).map { _ in generator.nextInt(below: 10) }, [7, 2, 8, 9, 9, 8, 0, 1, 4, 1])
        var counts = [Int](repeating: 0, count: 3)
        for _ in 0..<3_000 { counts[generator.nextInt(below: 3)] += 1 }
        XCTAssert(counts.allSatisfy { $0 > 900 && $0 < 1_100 }, "\(counts)")
        XCTAssertEqual(generator.nextInt(below: 1), 0)
    }

    /// A generator rebuilt from its state, directly or through JSON, continues the same sequence.
    func testSaveAndRestoreContinues() throws {
        var original = SeededGenerator(seed: 2024)
        for _ in 0..<5 { _ = original.next() }
        var restored = try SeededGenerator(state: original.state)
        let json = try JSONEncoder().encode(original)
        var decoded = try JSONDecoder().decode(SeededGenerator.self, from: json)
        let expected = (0..<6).map { _ in original.next() }
        XCTAssertEqual((0..<6).map { _ in restored.next() }, expected)
        XCTAssertEqual((0..<6).map { _ in decoded.next() }, expected)

        // Full 64-bit words survive JSON exactly.
        let extreme = try SeededGenerator(state: [UInt64.max, 1, 0, 0x8000_0000_0000_0001])
        let extremeCopy = try JSONDecoder().decode(SeededGenerator.self, from: JSONEncoder().encode(extreme))
        XCTAssertEqual(extremeCopy.state, extreme.state)
    }

    func testInvalidStatesAreRejected() {
        XCTAssertThrowsError(try SeededGenerator(state: [1, 2, 3])) {
            XCTAssertEqual($0 as? SeededGeneratorError, .wrongWordCount(3))
            XCTAssertEqual("\($0)", "random generator state must have 4 words, got 3")
        }
        XCTAssertThrowsError(try SeededGenerator(state: [0, 0, 0, 0])) {
            XCTAssertEqual($0 as? SeededGeneratorError, .allZero)
        }
        XCTAssertThrowsError(try JSONDecoder().decode(SeededGenerator.self, from: Data("[0,0,0,0]".utf8)))
    }
}
