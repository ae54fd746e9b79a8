import Foundation
import Recurrent
@_spi(Fuzzing) import Training
import Wire

/// One decoder under fuzzing: seeds to mutate, a dictionary of tokens, and a body that decodes
/// one input. The contract every decoder must keep, whatever the bytes: return a value or throw
/// its own typed error. A trap, an untyped error or a broken invariant (a decoded message that
/// does not re-encode, a corpus that Swift's own UTF-8 validator disagrees with) is a finding.
public struct FuzzTarget: Sendable {
    public let name: String
    /// Valid encodings to start from (the committed corpus under Tests/Fuzz/corpus adds to them).
    public let seeds: @Sendable () -> [[UInt8]]
    /// Tokens the mutator inserts or substitutes: field names, punctuation, numbers as text.
    public let dictionary: [[UInt8]]
    let body: @Sendable ([UInt8]) throws -> Void
    let isTyped: @Sendable (Error) -> Bool

    public enum Outcome: Equatable, Sendable {
        case decoded
        case rejected
        case finding(String)
    }

    public func run(_ input: [UInt8]) -> Outcome {
        do {
            try body(input)
            return .decoded
        } catch let finding as Finding {
            return .finding(finding.description)
        } catch {
            return isTyped(error) ? .rejected : .finding("untyped error \(type(of: error)): \(error)")
        }
    }
}

/// A broken invariant found while checking a decoded value.
struct Finding: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

public enum FuzzTargets {
    public static let all: [FuzzTarget] = [wire, safetensors, checkpointModel, checkpointMetadata, stateJSON, corpus,
                                           labelFile, inputLines, shardMessages]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    static func tokens(_ words: [String]) -> [[UInt8]] { words.map { Array($0.utf8) } }

    static let jsonTokens = tokens(["{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "null", "true",
                                    "-1", "0", "1e309", "-0", "1.5", "4294967296", "9223372036854775807",
                                    "18446744073709551616", "1099511627776", "NaN", "\u{FEFF}"])

    // MARK: Wire

    /// The model the wire seeds' weights are tensors of; decoded weights are copied into it.
    static let wireLayout = ParameterLayout(ModelConfig(cell: .gru, vocabularySize: 3, hiddenSize: 2, layerCount: 2))

    static let wire = FuzzTarget(
        name: "wire",
        seeds: {
            let layout = wireLayout
            let tensors = layout.slices.map { slice in
                WireTensor(name: slice.name, shape: slice.shape, values: (0..<slice.count).map { Float($0) * 0.25 - 1 })
            }
            let state = [WireTensor(name: "state.h", shape: [2, 1, 2], values: [0.5, -0.5, 1e-3, -0.0])]
            let messages: [Message] = [
                .hello(Hello(corpusDigest: String(repeating: "ab", count: 32), vocabularyDigest: String(repeating: "cd", count: 32),
                             host: "node-1", pid: 4242, threads: 2)),
                .welcome(Welcome(rank: 1, workerCount: 3, runConfig: #"{"optimizer":"adam"}"#, streamBegin: 4,
                                 streamEnd: 8, step: 17, state: state)),
                .weights(Weights(step: 9, resetState: true, tensors: tensors)),
                .gradientPush(GradientPush(step: 9, tokenCount: 512, lossSum: 1234.5, tensors: Array(tensors[2...]), state: state,
                                           computeSeconds: 0.25, communicateSeconds: 0.125, waitSeconds: 0.5,
                                           part: 1, parts: 2)),
                .heartbeat(Heartbeat(rank: 2, step: 99)),
                .shutdown(Shutdown(reason: "training finished")),
                .error(WireErrorMessage(message: "protocol version 2, expected 1")),
            ]
            return messages.map { WireCodec.encode($0) }
        },
        dictionary: tokens(["rnn.weight_ih_l0", "head.bias", "state.h"]) + [[0x08, 0x01], [0x12, 0x00], [0x22, 0x00], [0x80, 0x80, 0x80, 0x80, 0x10]],
        body: { bytes in
            let decoded = try WireCodec.decode(bytes, limits: DecodeLimits(maxMessageBytes: 1 << 20, maxTensorElements: 1 << 16))
            let again: DecodedMessage
            do {
                again = try WireCodec.decode(WireCodec.encode(decoded.message), limits: .standard)
            } catch {
                throw Finding("a decoded \(decoded.kind) does not re-encode and decode: \(error)")
            }
            guard again.kind == decoded.kind else { throw Finding("\(decoded.kind) re-decodes as \(again.kind)") }
            let layout = wireLayout
            var slab = [Float](repeating: 0, count: layout.count)
            switch decoded {
            case .weights(let weights):
                try slab.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: layout) }
            case .gradientPush(let push):
                try slab.withUnsafeMutableBufferPointer { try push.copyTensors(into: $0, layout: layout, slices: 2..<layout.slices.count) }
            default:
                break
            }
        },
        isTyped: { $0 is WireError })

    // MARK: Safetensors

    static let safetensors = FuzzTarget(
        name: "safetensors",
        seeds: {
            let tensors = [SafetensorsTensor(name: "a", shape: [2, 3], values: [1, -2, 0.5, .infinity, -0.0, 3]),
                           SafetensorsTensor(name: "scalar", shape: [], values: [7]),
                           SafetensorsTensor(name: "empty", shape: [0, 4], values: [])]
            var seeds = [Safetensors.encode(tensors: tensors, metadata: ["format": "pt", "note": "é\n\u{0}"]),
                         Safetensors.encode(tensors: [])]
            // The half and double dtypes the reader converts, written by hand.
            for (dtype, size) in [("F16", 2), ("BF16", 2), ("F64", 8)] {
                var header = Array("{\"x\":{\"dtype\":\"\(dtype)\",\"shape\":[2],\"data_offsets\":[0,\(2 * size)]}}".utf8)
                while header.count % 8 != 0 { header.append(0x20) }
                var bytes: [UInt8] = []
                withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
                bytes += header + (0..<(2 * size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 60) }
                seeds.append(bytes)
            }
            return seeds
        },
        dictionary: jsonTokens + tokens(["\"__metadata__\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"F16\"",
                                          "\"BF16\"", "\"F64\"", "\"U8\"", "\"F8_E4M3\""]),
        body: { bytes in
            let (tensors, _) = try Safetensors.decode(bytes)
            for tensor in tensors.values where tensor.values.count != tensor.shape.reduce(1, *) {
                throw Finding("tensor \(tensor.name) of shape \(tensor.shape) holds \(tensor.values.count) values")
            }
        },
        isTyped: { $0 is SafetensorsError })

    // MARK: Checkpoint files

    /// A small checkpoint whose files seed the checkpoint targets.
    static func sampleCheckpoint(cell: CellType) -> Checkpoint {
        var config = TrainingConfig()
        config.cell = cell
        config.layers = 2
        config.hidden = 3
        config.streams = 2
        config.chunkStreams = 1
        config.steps = 10
        let vocabulary = Vocabulary(of: "\n \"\\abé\u{1F600}")
        let model = config.model(vocabularySize: vocabulary.count)
        let count = ParameterLayout(model).count
        let parameters = (0..<count).map { Float($0 % 17) * 0.125 - 1 }
        let state = 2 * 2 * 3
        let training = Checkpoint.TrainingState(
            config: config, step: 4, corpusDigest: String(repeating: "0f", count: 32), randomState: [1, 2, 3, 4],
            optimizerStepCount: 4, optimizerBuffers: config.optimizer.kind.stateBufferNames.map { ($0, parameters) },
            hiddenH: (0..<state).map { Float($0) }, hiddenC: cell == .lstm ? (0..<state).map { -Float($0) } : [])
        return Checkpoint(model: model, vocabulary: vocabulary, parameters: parameters, training: training)
    }

    static let checkpointModel = FuzzTarget(
        name: "checkpoint-model",
        seeds: { CellType.allCases.map { try! sampleCheckpoint(cell: $0).modelFileBytes() } },
        dictionary: jsonTokens + tokens(["\"config\"", "\"vocabulary\"", "hidden_size", "num_layers", "vocab_size",
                                          "\"lstm\"", "\"gru\"", "\"rnn\"", "rnn.weight_hh_l1", "rnn.bias_hh_l0", "head.weight"]),
        body: { bytes in
            let checkpoint = try Checkpoint.decodeModelFile(bytes)
            guard checkpoint.parameters.count == ParameterLayout(checkpoint.model).count,
                  checkpoint.parameters.allSatisfy(\.isFinite) else {
                throw Finding("decoded parameters do not fit the model or are not finite")
            }
        },
        isTyped: { $0 is TrainingError })

    /// Input: config JSON, a NUL byte, vocabulary JSON (no NUL: the vocabulary is empty).
    static let checkpointMetadata = FuzzTarget(
        name: "checkpoint-metadata",
        seeds: {
            CellType.allCases.map { cell in
                let checkpoint = sampleCheckpoint(cell: cell)
                let vocabulary = try! JSONEncoder().encode(checkpoint.vocabulary)
                return Array(Checkpoint.modelJSON(checkpoint.model).utf8) + [0] + Array(vocabulary)
            }
        },
        dictionary: jsonTokens + tokens(["\"cell\"", "\"hidden_size\"", "\"num_layers\"", "\"vocab_size\"", "\"lstm\"", "\"gru\"",
                                          "\"\\n\"", "\"\\udbff\\udfff\""]),
        body: { bytes in
            let split = bytes.firstIndex(of: 0) ?? bytes.endIndex
            let config = String(decoding: bytes[..<split], as: UTF8.self)
            let vocabulary = split < bytes.endIndex ? String(decoding: bytes[(split + 1)...], as: UTF8.self) : ""
            let (model, decoded) = try Checkpoint.decodeMetadata(config: config, vocabulary: vocabulary)
            guard decoded.count == model.vocabularySize else { throw Finding("vocabulary count differs from vocab_size") }
        },
        isTyped: { $0 is TrainingError })

    static let stateJSON = FuzzTarget(
        name: "state-json",
        seeds: { [try! sampleCheckpoint(cell: .lstm).stateFileBytes()!] },
        dictionary: jsonTokens + tokens(["\"step\"", "\"random_state\"", "\"corpus_digest\"", "\"training_config\"",
                                          "\"layers\"", "\"hidden\"", "\"streams\"", "\"chunkStreams\"", "\"optimizer\""]),
        body: { bytes in
            let model = sampleCheckpoint(cell: .lstm).model
            let step = try Checkpoint.decodeStateFile(bytes, model: model)
            guard step >= 0 else { throw Finding("negative step \(step) accepted") }
        },
        isTyped: { $0 is TrainingError })

    // MARK: Corpus

    static let corpus = FuzzTarget(
        name: "corpus",
        seeds: {
            [Array("the cat sat on the mat.\n".utf8), Array("héllo wörld ☃ \u{1F600} \u{10FFFF}\r\n".utf8),
             [0xEF, 0xBB, 0xBF, 0x61], [0x00, 0x7F, 0xC2, 0x80, 0xDF, 0xBF, 0xE0, 0xA0, 0x80, 0xF4, 0x8F, 0xBF, 0xBF],
             [0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF, 0x0D, 0x0A, 0x00, 0x0D],
             Array(String(repeating: "a long line without an end ", count: 400).utf8)]
        },
        dictionary: [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE0, 0x80], [0xF0], [0x80], [0xFF], [0xC2],
                     [0xEF, 0xBB, 0xBF], [0x0D, 0x0A], [0x0D], [0x00]],
        body: { bytes in
            // Swift's validator is the oracle: both must agree on every input. A leading byte
            // order mark is not text (Corpus), so it is not counted.
            let valid = String(validating: bytes, as: UTF8.self)
            do {
                let corpus = try Corpus.decode(bytes, name: "fuzz")
                guard let text = valid else { throw Finding("strict decoder accepted bytes Swift rejects") }
                let scalars = text.unicodeScalars.first == "\u{FEFF}" ? Array(text.unicodeScalars.dropFirst()) : Array(text.unicodeScalars)
                guard corpus.count == scalars.count, corpus.vocabulary.count == Set(scalars).count else {
                    throw Finding("decoded \(corpus.count) scalars, Swift \(scalars.count)")
                }
                guard corpus.vocabulary.decode(corpus.tokens) == String(String.UnicodeScalarView(scalars)) else {
                    throw Finding("decoded text differs from Swift's")
                }
            } catch let error as CorpusError {
                if case .invalidUTF8 = error, valid != nil { throw Finding("strict decoder rejected valid UTF-8: \(error)") }
                throw error
            }
        },
        isTyped: { $0 is CorpusError })
}

// MARK: Lines

extension FuzzTargets {
    /// The line limit under fuzzing: small, so inputs of a few hundred bytes reach it.
    static let fuzzLineLimit = 64

    static let lineTokens: [[UInt8]] = [[0x09], [0x0A], [0x0D, 0x0A], [0x0D], [0x00], [0x1B], [0xEF, 0xBB, 0xBF], [0xFF], [0xC2],
                                        [0xE2, 0x82], Array(String(repeating: "x", count: 60).utf8)]

    /// Training's reading of a classification file (`Corpus.decode`, then `LabelledExamples.parse`)
    /// against `eval`'s and `--val-data`'s (`LabelledExamples.read` through a `LineReader`
    /// fed a few bytes at a time): when training accepts a file, reading it with the training
    /// vocabulary and labels gives the same examples; when training refuses a line by the line
    /// contract, the reader refuses the same line for the same reason.
    static let labelFile = FuzzTarget(
        name: "label-file",
        seeds: {
            ["pos\tgood day\nneg\tbad\n", "pos\tgood\r\nneg\tbad\tstill text\r\n", "\u{FEFF}pos\tgood\nneg\tbad",
             "a\tnul \u{0} here\r\nb\tx\u{FEFF}y\n", "é\t😀\r\nx\ty\r"].map { Array($0.utf8) }
        },
        dictionary: lineTokens,
        body: { bytes in
            let corpus = try Corpus.decode(bytes, name: "fuzz")
            let reader = LineReader(bytes: bytes, name: "fuzz", readBytes: 1 + bytes.count % 7, maximumLineBytes: fuzzLineLimit)
            let labels: [String], examples: [LabelledExamples.Example]
            do {
                (labels, examples) = try LabelledExamples.parse(corpus, maximumLineBytes: fuzzLineLimit)
            } catch CorpusError.badExample(_, let line, let reason)
                        where reason == TextLines.loneCarriageReturn || reason == TextLines.tooLong(limit: fuzzLineLimit) {
                do {
                    while try reader.next() != nil {}
                    throw Finding("training refused line \(line) (\(reason)), the reader read every line")
                } catch CorpusError.badExample(_, let readLine, let readReason) {
                    guard readLine == line, readReason == reason else {
                        throw Finding("training refused line \(line) (\(reason)), the reader line \(readLine) (\(readReason))")
                    }
                }
                throw CorpusError.badExample(path: "fuzz", line: line, reason: reason)
            }
            for label in labels where LabelledExamples.labelProblem(label) != nil {
                throw Finding("training accepted the label \(label.debugDescription)")
            }
            let read: LabelledExamples
            do {
                read = try LabelledExamples.read(lines: reader, vocabulary: corpus.vocabulary, labels: labels)
            } catch {
                throw Finding("training accepted the file, reading it failed: \(error)")
            }
            guard read.count == examples.count, read.skippedCharacters == 0, read.skippedEmpty == 0, read.skippedUnknownLabels == 0 else {
                throw Finding("training split \(examples.count) examples, reading \(read.count) (skipped \(read.skippedUnknownLabels) labels, \(read.skippedEmpty) empty)")
            }
            for (t, r) in zip(examples, read.examples) {
                guard t.label == r.label, Array(corpus.tokens[t.start..<(t.start + t.count)]) == Array(read.tokens[r.start..<(r.start + r.count)]) else {
                    throw Finding("an example differs between training and reading")
                }
            }
        },
        isTyped: { $0 is CorpusError })

    /// `predict`'s input: a `LineReader` fed 1–5 bytes at a time against a reference splitter
    /// written from the contract (split at LF, drop a BOM on line 1 and one CR before the end,
    /// then: too long, lone CR, not UTF-8): the same lines, or a refusal of the same line for
    /// the same reason.
    static let inputLines = FuzzTarget(
        name: "input-lines",
        seeds: {
            ["one\ntwo\n", "one\r\ntwo", "\u{FEFF}first\r\n\u{FEFF}second\n\n", "nul\u{0}\r\n\u{1B}[2J é😀\r"].map { Array($0.utf8) }
        },
        dictionary: lineTokens,
        body: { bytes in
            var expected: [String] = []
            var refusal: (line: Int, reason: String)?
            var pieces = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
            if pieces.last?.isEmpty == true { pieces.removeLast() }
            for (i, piece) in pieces.enumerated() {
                var text = piece[...]
                if i == 0, text.starts(with: TextLines.byteOrderMark) { text = text.dropFirst(3) }
                if text.last == 0x0D { text = text.dropLast() }
                if text.count > fuzzLineLimit { refusal = (i + 1, TextLines.tooLong(limit: fuzzLineLimit)) }
                else if text.contains(0x0D) { refusal = (i + 1, TextLines.loneCarriageReturn) }
                else if let line = String(validating: text, as: UTF8.self) { expected.append(line) }
                else { refusal = (i + 1, "not valid UTF-8") }
                if refusal != nil { break }
            }
            let reader = LineReader(bytes: bytes, name: "fuzz", readBytes: 1 + bytes.count % 5, maximumLineBytes: fuzzLineLimit)
            var lines: [String] = []
            do {
                while let line = try reader.next() { lines.append(line) }
            } catch CorpusError.badExample(_, let line, let reason) {
                guard let refusal, refusal.line == line, reason.hasPrefix(refusal.reason) else {
                    throw Finding("the reader refused line \(line) (\(reason)), the contract \(refusal.map { "line \($0.line) (\($0.reason))" } ?? "nothing")")
                }
                guard lines == expected else { throw Finding("the lines before the refusal differ") }
                throw CorpusError.badExample(path: "fuzz", line: line, reason: reason)
            }
            if let refusal { throw Finding("the reader read every line, the contract refuses line \(refusal.line) (\(refusal.reason))") }
            guard lines == expected else { throw Finding("the reader gave \(lines.count) lines, the contract \(expected.count)") }
        },
        isTyped: { $0 is CorpusError })
}
