import Foundation
import Recurrent
import Training
import XCTest

/// Classifiers written by PyTorch itself (nn.RNN/LSTM/GRU(V, 8, num_layers=2, batch_first=True,
/// bidirectional=True) + nn.Linear(16, 5), and one unidirectional LSTM; random non-zero
/// bias_ih and bias_hh; and a bidirectional GRU whose head reads the mean of the top layer's
/// outputs, `pad_packed_sequence(out).sum(1) / lengths`) give, through `SequenceClassifier<Float>`, the logits PyTorch computed
/// for 4 texts of different lengths run as one PackedSequence. This pins the classifier's
/// contract: `_reverse` weights, the reverse direction's feature (h after position 0), the
/// 2H-wide input of layer 1, variable lengths. Fixtures: scripts/make-pytorch-classifier-fixtures.py.
final class PyTorchClassifierTests: XCTestCase {
    struct Expected: Decodable {
        var texts: [String]
        var logits: [String: [[Double]]]
    }

    struct FileConfig: Decodable {
        var cell: String
        var hidden_size: Int
        var num_layers: Int
        var vocab_size: Int
        var bidirectional: Bool
        var num_labels: Int
        var pooling: String?
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The file's model in Recur's layout: tensors by name; RNN/LSTM's bias_hh added into bias_ih.
    static func load(_ name: String) throws -> (config: ModelConfig, parameters: [Float], vocabulary: [Character]) {
        let bytes = try [UInt8](Data(contentsOf: fixtures.appendingPathComponent("pytorch-classifier-\(name)/model.safetensors")))
        let (tensors, metadata) = try Safetensors.decode(bytes)
        let file = try JSONDecoder().decode(FileConfig.self, from: Data(metadata["config"]!.utf8))
        let vocabulary = try JSONDecoder().decode([String].self, from: Data(metadata["vocabulary"]!.utf8)).map { Character($0) }
        let config = ModelConfig(cell: CellType(rawValue: file.cell)!, vocabularySize: file.vocab_size, hiddenSize: file.hidden_size,
                                 layerCount: file.num_layers, bidirectional: file.bidirectional, labelCount: file.num_labels,
                                 pooling: file.pooling.map { Pooling(rawValue: $0)! } ?? .last)
        let layout = ParameterLayout(config)
        var parameters = [Float](repeating: 0, count: layout.count)
        var used = Set<String>()
        for slice in layout.slices {
            let tensor = try XCTUnwrap(tensors[slice.name], slice.name)
            XCTAssertEqual(tensor.shape, slice.shape, slice.name)
            for (i, v) in tensor.values.enumerated() { parameters[slice.offset + i] = v }
            used.insert(slice.name)
            if slice.role == .inputBias, !config.cell.hasRecurrentBias {
                let recurrent = slice.name.replacingOccurrences(of: "bias_ih", with: "bias_hh")
                for (i, v) in try XCTUnwrap(tensors[recurrent], recurrent).values.enumerated() { parameters[slice.offset + i] += v }
                used.insert(recurrent)
            }
        }
        XCTAssertEqual(used, Set(tensors.keys), "every tensor of the file is used")
        return (config, parameters, vocabulary)
    }

    func testPyTorchClassifiersGiveTheirLogits() throws {
        let expected = try JSONDecoder().decode(Expected.self,
                                                from: Data(contentsOf: Self.fixtures.appendingPathComponent("pytorch-classifier-expected.json")))
        XCTAssertEqual(Set(expected.logits.keys), ["rnn", "lstm", "gru", "lstm-uni", "gru-mean"])
        XCTAssertEqual(Set(expected.texts.map(\.count)).count, 4, "4 different lengths")
        for name in expected.logits.keys.sorted() {
            let (config, parameters, vocabulary) = try Self.load(name)
            XCTAssertEqual(config.bidirectional, name != "lstm-uni")
            XCTAssertEqual(config.pooling, name == "gru-mean" ? .mean : .last)
            let T = expected.texts.map(\.count).max()!
            let net = SequenceClassifier<Float>(config: config, capacity: 4, maxLength: T)
            for (b, text) in expected.texts.enumerated() {
                net.lengths[b] = Int32(text.count)
                for (t, c) in text.enumerated() { net.inputs[b * T + t] = try Int32(XCTUnwrap(vocabulary.firstIndex(of: c))) }
            }
            parameters.withUnsafeBufferPointer { _ = net.forward(parameters: $0.baseAddress!, count: 4) }
            for (b, row) in expected.logits[name]!.enumerated() {
                let logits = net.logits(example: b)
                XCTAssertEqual(logits.count, 5)
                for (j, value) in row.enumerated() {
                    XCTAssertEqual(Double(logits[j]), value, accuracy: 1e-5, "\(name) text \(b) logit \(j)")
                }
            }
        }
    }
}
