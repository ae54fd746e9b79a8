import Recurrent
import Training
import XCTest

/// `recur train --task classify --init-from LM_DIR`: which of a language model's values land
/// where in a classifier, what keeps its initialization, and what is refused.
final class LanguageModelTransferTests: XCTestCase {
    /// A language model over "abc" whose every value is its own index + 1 (no value is 0).
    static func languageModel(cell: CellType = .gru, hidden: Int = 3, layers: Int = 2) -> Checkpoint {
        let model = ModelConfig(cell: cell, vocabularySize: 3, hiddenSize: hidden, layerCount: layers)
        let count = ParameterLayout(model).count
        return Checkpoint(model: model, vocabulary: Vocabulary(of: "abc"),
                          parameters: (0..<count).map { Float($0 + 1) })
    }

    func testLayersCopyByNameAndInputColumnsByCharacter() throws {
        let source = Self.languageModel()
        let sourceLayout = ParameterLayout(source.model)
        // The classifier's file adds a tab and "X" and lacks "b": ids \t 0, X 1, a 2, c 3.
        let vocabulary = Vocabulary(of: "\tXac")
        let layout = ParameterLayout(ModelConfig(cell: .gru, vocabularySize: 4, hiddenSize: 3, layerCount: 2, labelCount: 5))
        var parameters = [Float](repeating: 0, count: layout.count)
        let report = try LanguageModelTransfer.copy(from: source, into: &parameters, layout: layout,
                                                    vocabulary: vocabulary, path: "lm")
        XCTAssertEqual(report.unseenCharacters, 2, "the tab and X")
        XCTAssertEqual(report.tensors, 8, "4 tensors of each of 2 GRU layers")

        let wih = layout.slice(named: "rnn.weight_ih_l0")!, old = sourceLayout.slice(named: "rnn.weight_ih_l0")!
        for r in 0..<9 {
            XCTAssertEqual(parameters[wih.offset + r * 4 + 0], 0, "tab: never seen, stays")
            XCTAssertEqual(parameters[wih.offset + r * 4 + 1], 0, "X: never seen, stays")
            XCTAssertEqual(parameters[wih.offset + r * 4 + 2], source.parameters[old.offset + r * 3 + 0], "a")
            XCTAssertEqual(parameters[wih.offset + r * 4 + 3], source.parameters[old.offset + r * 3 + 2], "c")
        }
        for name in ["rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_hh_l1"] {
            let to = layout.slice(named: name)!, from = sourceLayout.slice(named: name)!
            XCTAssertEqual(Array(parameters[to.range]), Array(source.parameters[from.range]), name)
        }
        for slice in layout.slices where slice.layer == nil {
            XCTAssertTrue(parameters[slice.range].allSatisfy { $0 == 0 }, "\(slice.name) starts fresh")
        }
        XCTAssertEqual(report.scalars, layout.slices.filter { $0.layer != nil }.map(\.count).reduce(0, +) - 9 * 2)
    }

    func testBidirectionalClassifierTakesTheForwardDirectionOnly() throws {
        let source = Self.languageModel(cell: .lstm, layers: 1)
        let layout = ParameterLayout(ModelConfig(cell: .lstm, vocabularySize: 3, hiddenSize: 3, layerCount: 1,
                                                 bidirectional: true, labelCount: 2, pooling: .mean))
        var parameters = [Float](repeating: -1, count: layout.count)
        _ = try LanguageModelTransfer.copy(from: source, into: &parameters, layout: layout,
                                           vocabulary: source.vocabulary, path: "lm")
        let sourceLayout = ParameterLayout(source.model)
        for slice in layout.slices where slice.layer == 0 {
            if slice.direction == 0 {
                XCTAssertEqual(Array(parameters[slice.range]), Array(source.parameters[sourceLayout.slice(named: slice.name)!.range]), slice.name)
            } else {
                XCTAssertTrue(parameters[slice.range].allSatisfy { $0 == -1 }, "\(slice.name) keeps its initialization")
            }
        }
    }

    func testOtherShapesAreRefusedWithTheirFlags() {
        let source = Self.languageModel(cell: .gru, hidden: 3, layers: 2)
        func attempt(_ model: ModelConfig) -> String {
            var parameters = [Float](repeating: 0, count: ParameterLayout(model).count)
            do {
                _ = try LanguageModelTransfer.copy(from: source, into: &parameters, layout: ParameterLayout(model),
                                                   vocabulary: source.vocabulary, path: "lm")
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(attempt(ModelConfig(cell: .gru, vocabularySize: 3, hiddenSize: 4, layerCount: 2, labelCount: 2))
            .contains("--cell gru --hidden 3 --layers 2"))
        XCTAssertTrue(attempt(ModelConfig(cell: .lstm, vocabularySize: 3, hiddenSize: 3, layerCount: 2, labelCount: 2))
            .contains("--cell gru"))
        XCTAssertTrue(attempt(ModelConfig(cell: .gru, vocabularySize: 3, hiddenSize: 3, layerCount: 2, bidirectional: true, labelCount: 2))
            .contains("--layers 1"))
    }
}
