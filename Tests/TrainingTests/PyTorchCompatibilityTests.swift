import Foundation
import Recurrent
import Training
import XCTest

/// Models written by PyTorch itself (`safetensors.torch.save_file`, nn.RNN / nn.LSTM /
/// nn.GRU state_dict names, random non-zero biases in both bias_ih and bias_hh) load as
/// checkpoints and score a text to the loss PyTorch computed for it. This pins the math
/// contract: gate order, GRU's reset-after-product formulation, bias handling, head, loss.
/// Fixtures: scripts/make-pytorch-fixtures.py (run once with torch; not needed to test).
final class PyTorchCompatibilityTests: XCTestCase {
    struct Expected: Decodable {
        var text: String
        var loss: [String: Double]
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func testPyTorchModelsScoreTheirTextToPyTorchsLoss() throws {
        let expected = try JSONDecoder().decode(Expected.self,
                                                from: Data(contentsOf: Self.fixtures.appendingPathComponent("pytorch-expected.json")))
        XCTAssertEqual(Set(expected.loss.keys), ["rnn", "lstm", "gru"])
        for cell in CellType.allCases {
            let checkpoint = try Checkpoint.read(from: Self.fixtures.appendingPathComponent("pytorch-\(cell.rawValue)"))
            XCTAssertEqual(checkpoint.model, ModelConfig(cell: cell, vocabularySize: checkpoint.vocabulary.count,
                                                         hiddenSize: 8, layerCount: 2))
            XCTAssertNil(checkpoint.training, "a bare model file has no training state")
            let tokens = try checkpoint.vocabulary.encode(expected.text)
            for window in [1, 7, 64] {   // the window only changes where state is carried
                let result = try XCTUnwrap(checkpoint.parameters.withUnsafeBufferPointer {
                    Evaluator.evaluate(model: checkpoint.model, parameters: $0.baseAddress!, tokens: tokens, window: window)
                })
                XCTAssertEqual(result.characters, tokens.count - 1)
                XCTAssertEqual(result.natsPerCharacter, expected.loss[cell.rawValue]!, accuracy: 2e-6,
                               "\(cell) window \(window)")
            }
        }
    }

    /// RNN and LSTM keep one bias: the file's bias_ih + bias_hh. Writing it back stores the
    /// sum as bias_ih and zeros as bias_hh, and the rewritten model scores the same.
    func testSummedBiasesRoundTripThroughRecurCheckpoints() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("recur-pt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        for cell in CellType.allCases {
            let original = try Checkpoint.read(from: Self.fixtures.appendingPathComponent("pytorch-\(cell.rawValue)"))
            try original.write(to: directory)
            let reread = try Checkpoint.read(from: directory)
            XCTAssertEqual(reread.parameters, original.parameters, "\(cell)")
            XCTAssertEqual(reread.vocabulary, original.vocabulary)
        }
    }
}
