import Foundation
import XCTest
import Training

final class SafetensorsTests: XCTestCase {
    // MARK: Fixtures written by the reference library (safetensors 0.8.0)

    /// `safetensors.numpy.save({"rnn.weight_ih_l0": float32 (2,3), "head.bias": float32 (2,)},
    /// metadata={"config": '{"cell":"lstm"}', "vocabulary": 'ab\n"é'})`. The reference sorts the
    /// data by name (head.bias first) and pads the header with spaces.
    static let numpyFloat32 = """
        0AAAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJ2b2NhYnVsYXJ5IjoiYWJcblwiw6kiLCJjb25maWciOiJ7XCJjZWxsXCI6XCJsc3RtXCJ9In0sImhlYWQuYmlh\
        cyI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbMl0sImRhdGFfb2Zmc2V0cyI6WzAsOF19LCJybm4ud2VpZ2h0X2loX2wwIjp7ImR0eXBlIjoiRjMyIiwic2hh\
        cGUiOlsyLDNdLCJkYXRhX29mZnNldHMiOls4LDMyXX19ICAgzczMPQAA4MAAAMA/AAAQwAAAAABZ2QAzyvJJcQAAAL4=
        """

    /// `safetensors.numpy.save({"double": float64 [1/3, -2.5, 1e-300],
    /// "half": float16 [[1, -0.333251953125], [65504, 2^-24]]})`, no metadata.
    static let numpyDoubleAndHalf = """
        eAAAAAAAAAB7ImRvdWJsZSI6eyJkdHlwZSI6IkY2NCIsInNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzAsMjRdfSwiaGFsZiI6eyJkdHlwZSI6IkYxNiIs\
        InNoYXBlIjpbMiwyXSwiZGF0YV9vZmZzZXRzIjpbMjQsMzJdfX1VVVVVVVXVPwAAAAAAAATAWfP4wh9upQEAPFW1/3sBAA==
        """

    /// `safetensors.torch.save({"bf": bfloat16 [1, -2.5, 3.140625, 1e-3], "f32": float32 [[0.5]]},
    /// metadata={"format": "pt"})` with torch 2.15.
    static let torchBFloat16 = """
        mAAAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJwdCJ9LCJmMzIiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzEsMV0sImRhdGFfb2Zmc2V0cyI6\
        WzAsNF19LCJiZiI6eyJkdHlwZSI6IkJGMTYiLCJzaGFwZSI6WzRdLCJkYXRhX29mZnNldHMiOls0LDEyXX19ICAgICAgIAAAAD+APyDASUCDOg==
        """

    /// What `encode(sampleTensors, sampleMetadata)` produced when `safetensors.numpy.load_file`
    /// and `safetensors.torch.load_file` were checked to read back exactly these values and metadata.
    static let writerOutputCheckedByPython = """
        UAEAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJjb25maWciOiJ7XCJjZWxsXCI6XCJncnVcIn0iLCJ2b2NhYnVsYXJ5IjoiXG4gYWJcdTAwMDHDqVwiXFwifSwi\
        cm5uLndlaWdodF9oaF9sMCI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbMiwyXSwiZGF0YV9vZmZzZXRzIjpbMCwxNl19LCJoZWFkLmJpYXMiOnsiZHR5cGUi\
        OiJGMzIiLCJzaGFwZSI6WzNdLCJkYXRhX29mZnNldHMiOlsxNiwyOF19LCJzY2FsYXIiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6W10sImRhdGFfb2Zmc2V0\
        cyI6WzI4LDMyXX0sImVtcHR5Ijp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlswLDRdLCJkYXRhX29mZnNldHMiOlszMiwzMl19fSAAAIA/AAAAwAAAAD+CqPs3\
        AACAPgAAAID5AhVQAADgQA==
        """

    static let sampleTensors = [
        SafetensorsTensor(name: "rnn.weight_hh_l0", shape: [2, 2], values: [1, -2, 0.5, 3e-5]),
        SafetensorsTensor(name: "head.bias", shape: [3], values: [0.25, -0.0, 1e10]),
        SafetensorsTensor(name: "scalar", shape: [], values: [7]),
        SafetensorsTensor(name: "empty", shape: [0, 4], values: []),
    ]
    static let sampleMetadata = ["vocabulary": "\n ab\u{1}é\"\\", "config": "{\"cell\":\"gru\"}"]

    static func bytes(_ base64: String) -> [UInt8] { [UInt8](Data(base64Encoded: base64)!) }

    // MARK: Reading reference files

    func testDecodesNumpyFloat32WithMetadata() throws {
        let (tensors, metadata) = try Safetensors.decode(Self.bytes(Self.numpyFloat32))
        XCTAssertEqual(metadata, ["config": "{\"cell\":\"lstm\"}", "vocabulary": "ab\n\"é"])
        XCTAssertEqual(tensors.count, 2)
        XCTAssertEqual(tensors["rnn.weight_ih_l0"],
                       SafetensorsTensor(name: "rnn.weight_ih_l0", shape: [2, 3], values: [1.5, -2.25, 0, 3e-8, 1e30, -0.125]))
        XCTAssertEqual(tensors["head.bias"], SafetensorsTensor(name: "head.bias", shape: [2], values: [0.1, -7]))
    }

    func testDecodesDoubleAndHalf() throws {
        let (tensors, metadata) = try Safetensors.decode(Self.bytes(Self.numpyDoubleAndHalf))
        XCTAssertEqual(metadata, [:])
        XCTAssertEqual(tensors["double"]?.shape, [3])
        XCTAssertEqual(tensors["double"]?.values, [Float(1.0 / 3.0), -2.5, 0])
        XCTAssertEqual(tensors["half"]?.shape, [2, 2])
        XCTAssertEqual(tensors["half"]?.values, [1, -0.333251953125, 65504, 0x1p-24])
    }

    func testDecodesTorchBFloat16() throws {
        let (tensors, metadata) = try Safetensors.decode(Self.bytes(Self.torchBFloat16))
        XCTAssertEqual(metadata, ["format": "pt"])
        XCTAssertEqual(tensors["bf"]?.values, [1, -2.5, 3.140625, 0.00099945068359375])
        XCTAssertEqual(tensors["f32"], SafetensorsTensor(name: "f32", shape: [1, 1], values: [0.5]))
    }

    func testHalfConversionCoversSpecialValues() throws {
        let halves: [UInt16] = [0x0000, 0x8000, 0x3C00, 0xC000, 0x03FF, 0x8001, 0x7C00, 0xFC00, 0x7E00]
        var bytes = Self.file(#"{"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]}}"#, dataCount: 0)
        for h in halves { bytes += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        let values = try XCTUnwrap(Safetensors.decode(bytes).tensors["h"]?.values)
        XCTAssertEqual(Array(values[0..<8]), [0, -0.0, 1, -2, 1023 * 0x1p-24, -0x1p-24, .infinity, -.infinity])
        XCTAssertEqual(values[1].sign, .minus)
        XCTAssertTrue(values[8].isNaN)
    }

    // MARK: Writing

    func testWriterOutputIsExactlyTheBytesPythonLoaded() {
        let encoded = Safetensors.encode(tensors: Self.sampleTensors, metadata: Self.sampleMetadata)
        XCTAssertEqual(encoded, Self.bytes(Self.writerOutputCheckedByPython))
    }

    func testRoundTripKeepsOrderPaddingAndValues() throws {
        let encoded = Safetensors.encode(tensors: Self.sampleTensors, metadata: Self.sampleMetadata)
        let headerLength = Int(encoded[0]) | Int(encoded[1]) << 8
        XCTAssertEqual(headerLength % 8, 0, "header padded to a multiple of 8")
        let header = String(decoding: encoded[8..<(8 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{\"__metadata__\":{\"config\":"))
        XCTAssertTrue(header.contains("\"rnn.weight_hh_l0\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"))
        XCTAssertTrue(header.contains("\"head.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]}"))
        XCTAssertEqual(encoded.count, 8 + headerLength + 32)
        // Data in the order given, little-endian: 1.0f = 00 00 80 3F first.
        XCTAssertEqual(Array(encoded[(8 + headerLength)..<(12 + headerLength)]), [0x00, 0x00, 0x80, 0x3F])

        let (tensors, metadata) = try Safetensors.decode(encoded)
        XCTAssertEqual(metadata, Self.sampleMetadata)
        XCTAssertEqual(tensors.count, Self.sampleTensors.count)
        for tensor in Self.sampleTensors { XCTAssertEqual(tensors[tensor.name], tensor) }
        XCTAssertEqual(tensors["head.bias"]?.values[1].sign, .minus, "-0 survives")
    }

    func testEmptyFileRoundTrips() throws {
        let encoded = Safetensors.encode(tensors: [], metadata: [:])
        XCTAssertEqual(Array(encoded[8...]), Array("{}      ".utf8))
        let (tensors, metadata) = try Safetensors.decode(encoded)
        XCTAssertTrue(tensors.isEmpty && metadata.isEmpty)
    }

    // MARK: Corrupt input

    /// A file with the given header text (padded) and `dataCount` zero bytes of data.
    static func file(_ header: String, dataCount: Int) -> [UInt8] {
        var text = Array(header.utf8)
        text += repeatElement(UInt8(ascii: " "), count: (8 - text.count % 8) % 8)
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(text.count).littleEndian) { bytes += $0 }
        return bytes + text + [UInt8](repeating: 0, count: dataCount)
    }

    func assertError(_ bytes: [UInt8], _ expected: SafetensorsError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Safetensors.decode(bytes), file: file, line: line) { error in
            XCTAssertEqual(error as? SafetensorsError, expected, file: file, line: line)
            XCTAssertFalse("\(error)".contains("\n"), "one line", file: file, line: line)
        }
    }

    func testCorruptInputsGiveTheRightError() {
        let entry = #"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
        assertError([1, 2, 3], .tooShort(byteCount: 3))

        var longHeader = Self.file(#"{"a":\#(entry)}"#, dataCount: 8)
        longHeader[2] = 1  // header length += 65536
        assertError(longHeader, .headerLengthBeyondFile(headerLength: 65536 + UInt64(longHeader[0]), byteCount: longHeader.count))

        guard case .invalidHeader? = decodeError(Self.file(#"{"a": [1,"#, dataCount: 0)) else {
            return XCTFail("bad JSON should be invalidHeader")
        }
        assertError(Self.file("[1, 2]", dataCount: 0), .invalidHeader(reason: "does not start with '{'"))
        assertError(Self.file(#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, dataCount: 8),
                    .malformedEntry(name: "a", reason: "'shape' is not a list of non-negative integers"))
        assertError(Self.file(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, dataCount: 8),
                    .malformedEntry(name: "a", reason: "'shape' is not a list of non-negative integers"))
        assertError(Self.file(#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, dataCount: 8),
                    .unknownDType(name: "a", dtype: "F33"))
        assertError(Self.file(#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, dataCount: 8),
                    .unsupportedDType(name: "a", dtype: "I64"))
        assertError(Self.file(#"{"a":\#(entry)}"#, dataCount: 4),
                    .offsetsOutOfRange(name: "a", begin: 0, end: 8, dataByteCount: 4))
        assertError(Self.file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, dataCount: 4),
                    .sizeMismatch(name: "a", shape: [2], dtype: "F32", expectedBytes: 8, actualBytes: 4))
        // Overlap: b starts inside a.
        assertError(Self.file(#"{"a":\#(entry),"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, dataCount: 12),
                    .notContiguous(name: "b", begin: 4, expectedBegin: 8))
        // Gap: b starts after a hole.
        assertError(Self.file(#"{"a":\#(entry),"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#, dataCount: 16),
                    .notContiguous(name: "b", begin: 12, expectedBegin: 8))
        assertError(Self.file(#"{"a":\#(entry)}"#, dataCount: 12), .trailingBytes(dataByteCount: 12, usedByteCount: 8))
        assertError(Self.file(#"{"__metadata__":{"k":1}}"#, dataCount: 0), .invalidMetadata(reason: "value for 'k' is not a string"))
    }

    func decodeError(_ bytes: [UInt8]) -> SafetensorsError? {
        do { _ = try Safetensors.decode(bytes); return nil } catch { return error as? SafetensorsError }
    }
}
