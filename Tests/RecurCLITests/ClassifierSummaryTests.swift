import Foundation
import TestSupport
import XCTest

/// `recur summary --bidirectional` and `--labels N`: Keras's counts and output shapes.
final class ClassifierSummaryTests: RecurBinaryTestCase {
    override class var scratchPrefix: String { "recur-summary" }

    /// The table's rows (after the header rule) split into fields separated by 2+ spaces.
    func summaryRows(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [[String]] {
        let result = try recur.run(["summary"] + arguments, in: scratch.url)
        XCTAssertEqual(result.status, 0, result.all, file: file, line: line)
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        let rules = lines.indices.filter { lines[$0].hasPrefix("===") }
        XCTAssertEqual(rules.count, 2, result.standardOutput, file: file, line: line)
        guard rules.count == 2 else { return [] }
        return lines[(rules[0] + 1)..<rules[1]].map { row in
            row.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } + [lines[rules[1] + 1].components(separatedBy: ": ")]
    }

    /// Keras: Bidirectional(SimpleRNN(3)) on 10 inputs = 2·42 = 84, output (None, T, 6) with
    /// return_sequences, (None, 6) without; LSTM 2·168 = 336, GRU (reset_after) 2·135 = 270.
    func testBidirectionalRowsCountBothDirections() throws {
        let rnn = try summaryRows(["--cell", "rnn", "--layers", "1", "--hidden", "3", "--vocab", "10", "--bidirectional"])
        XCTAssertEqual(rnn[0], ["bidirectional_1 (Bidirectional(SimpleRNN))", "(None, T, 6)", "(None, 6)", "84"])
        // The language-model head reads 6 features per step: Dense(10) = 6·10 + 10.
        XCTAssertEqual(rnn[1], ["head (Dense)", "(None, T, 10)", "70"])
        XCTAssertEqual(rnn.last, ["Total params", "154"])
        let lstm = try summaryRows(["--cell", "lstm", "--layers", "2", "--hidden", "3", "--vocab", "10", "--bidirectional"])
        XCTAssertEqual(lstm[0].last, "336")
        // Layer 2 reads 2H = 6: 2·4·(3·(6+3) + 3) = 240.
        XCTAssertEqual(lstm[1], ["bidirectional_2 (Bidirectional(LSTM))", "(None, T, 6)", "(None, 6)", "240"])
        let gru = try summaryRows(["--cell", "gru", "--layers", "1", "--hidden", "3", "--vocab", "10", "--bidirectional"])
        XCTAssertEqual(gru[0].last, "270")
    }

    /// A classifier's head is Dense(N) on the last step: (None, N), N·(H·directions) + N.
    func testClassifierHeadRow() throws {
        let bi = try summaryRows(["--cell", "lstm", "--layers", "1", "--hidden", "3", "--vocab", "10", "--bidirectional", "--labels", "4"])
        XCTAssertEqual(bi[0], ["bidirectional_1 (Bidirectional(LSTM))", "(None, T, 6)", "(None, 6)", "336"])
        XCTAssertEqual(bi[1], ["head (Dense)", "(None, 4)", "28"])
        XCTAssertEqual(bi.last, ["Total params", "364"])
        let uni = try summaryRows(["--cell", "gru", "--layers", "1", "--hidden", "3", "--vocab", "10", "--labels", "2"])
        XCTAssertEqual(uni[0], ["gru_1 (GRU)", "(None, T, 3)", "(None, 3)", "135"])
        XCTAssertEqual(uni[1], ["head (Dense)", "(None, 2)", "8"])
        // --pool mean: Keras's return_sequences=True + GlobalAveragePooling1D (no parameters).
        let mean = try summaryRows(["--cell", "lstm", "--layers", "1", "--hidden", "3", "--vocab", "10", "--bidirectional",
                                    "--labels", "4", "--pool", "mean"])
        XCTAssertEqual(mean[1], ["mean (GlobalAveragePooling1D)", "(None, 6)", "0"])
        XCTAssertEqual(mean[2], ["head (Dense)", "(None, 4)", "28"])
        XCTAssertEqual(mean.last, ["Total params", "364"])
    }

    func testBadClassifierFlags() throws {
        for (arguments, word) in [(["summary", "--labels", "0", "--vocab", "10"], "labels"),
                                  (["summary", "--checkpoint", "x", "--bidirectional"], "bidirectional"),
                                  (["summary", "--pool", "mean", "--vocab", "10"], "--labels")] {
            let result = try recur.run(arguments, in: scratch.url)
            XCTAssertNotEqual(result.status, 0, result.all)
            XCTAssertTrue(result.standardError.contains(word), result.all)
            XCTAssertFalse(result.standardError.contains("Fatal error"), result.all)
        }
    }
}
