import Foundation

/// One named tensor as it travels through a safetensors file: row-major `shape`, values as Float.
public struct SafetensorsTensor: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    /// `shape.reduce(1, *)` values, row-major (a scalar has shape `[]` and one value).
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape) for \(name)")
        precondition(shape.reduce(1, *) == values.count,
                     "tensor \(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Why a byte buffer is not a safetensors file we can read. One line each, naming the tensor.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    /// Fewer than the 8 bytes of the header length.
    case tooShort(byteCount: Int)
    /// The header length runs past the end of the buffer (or past the 100 MB limit).
    case headerLengthBeyondFile(headerLength: UInt64, byteCount: Int)
    /// The header is not a UTF-8 JSON object.
    case invalidHeader(reason: String)
    /// An entry lacks a field or has one of the wrong type.
    case malformedEntry(name: String, reason: String)
    /// A dtype that is not in the safetensors vocabulary at all.
    case unknownDType(name: String, dtype: String)
    /// A valid safetensors dtype that cannot become Float (integers, bool, 8-bit floats).
    case unsupportedDType(name: String, dtype: String)
    /// `data_offsets` reach outside the data section or are reversed.
    case offsetsOutOfRange(name: String, begin: Int, end: Int, dataByteCount: Int)
    /// `end - begin` differs from shape × dtype size.
    case sizeMismatch(name: String, shape: [Int], dtype: String, expectedBytes: Int, actualBytes: Int)
    /// Two tensors share bytes, or bytes lie between them (the format requires a dense layout).
    case notContiguous(name: String, begin: Int, expectedBegin: Int)
    /// Bytes after the last tensor.
    case trailingBytes(dataByteCount: Int, usedByteCount: Int)
    /// `__metadata__` is not a string-to-string object.
    case invalidMetadata(reason: String)

    public var description: String {
        switch self {
        case let .tooShort(n):
            return "safetensors: \(n) bytes is too short for the 8-byte header length"
        case let .headerLengthBeyondFile(length, n):
            return "safetensors: header length \(length) runs past the end of a \(n)-byte file"
        case let .invalidHeader(reason):
            return "safetensors: header is not a valid JSON object: \(reason)"
        case let .malformedEntry(name, reason):
            return "safetensors: tensor '\(name)': \(reason)"
        case let .unknownDType(name, dtype):
            return "safetensors: tensor '\(name)' has unknown dtype '\(dtype)'"
        case let .unsupportedDType(name, dtype):
            return "safetensors: tensor '\(name)' has dtype \(dtype); only F32, F64, F16 and BF16 can be read"
        case let .offsetsOutOfRange(name, begin, end, size):
            return "safetensors: tensor '\(name)' data_offsets [\(begin), \(end)] lie outside the \(size)-byte data section"
        case let .sizeMismatch(name, shape, dtype, expected, actual):
            return "safetensors: tensor '\(name)' of shape \(shape) and dtype \(dtype) needs \(expected) bytes, data_offsets give \(actual)"
        case let .notContiguous(name, begin, expected):
            return "safetensors: tensor '\(name)' starts at byte \(begin), expected \(expected) (tensors must be packed without gaps or overlap)"
        case let .trailingBytes(size, used):
            return "safetensors: data section has \(size) bytes but the tensors use \(used)"
        case let .invalidMetadata(reason):
            return "safetensors: __metadata__ \(reason)"
        }
    }
}

/// Reader and writer of the safetensors format (huggingface/safetensors):
///
///     [8 bytes: header length n, UInt64 little-endian]
///     [n bytes: JSON {"__metadata__": {String: String}, name: {"dtype", "shape", "data_offsets": [begin, end]}}]
///     [data: every tensor's bytes, little-endian, offsets relative to the start of this section]
///
/// The writer emits F32 only; the reader takes F32, F64, F16 and BF16 and converts to Float, so a
/// file saved by PyTorch in any of those loads. Validation follows the reference implementation:
/// tensors must tile the data section exactly, in offset order, with no gap, overlap or tail.
public enum Safetensors {
    /// The reference implementation refuses headers beyond 100 MB; so do we.
    public static let maximumHeaderLength: UInt64 = 100_000_000

    /// Bytes per element of every dtype the format defines; `nil` marks the ones we cannot read.
    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]
    static let readableDTypes: Set<String> = ["F32", "F64", "F16", "BF16"]

    // MARK: Writer

    /// Encodes `tensors` as F32, data laid out in the order given; JSON keys are written
    /// `__metadata__` first (omitted when empty, as the reference does), then the tensors in the
    /// order given. The header is padded with spaces to a multiple of 8 bytes, like the reference.
    public static func encode(tensors: [SafetensorsTensor], metadata: [String: String] = [:]) -> [UInt8] {
        precondition(Set(tensors.map(\.name)).count == tensors.count, "duplicate tensor names")
        precondition(!tensors.contains { $0.name == "__metadata__" }, "'__metadata__' is reserved")

        var json = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in tensors {
            let end = offset + tensor.values.count * 4
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        json += fields.joined(separator: ",") + "}"

        var header = Array(json.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))

        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header)
        for tensor in tensors { appendLittleEndian(tensor.values, to: &bytes) }
        return bytes
    }

    /// JSON string literal: quotes, backslashes and control characters escaped, the rest as UTF-8
    /// except U+FEFF, written `\ufeff`: Foundation's JSONSerialization (swift-corelibs) drops a
    /// raw U+FEFF at the start of a string or right after an escape, so a vocabulary holding it
    /// would not read back (see `decode`, which guards files written by other tools).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0xFEFF:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// `header` with every U+FEFF (EF BB BF, only ever that scalar in valid UTF-8) written as the
    /// escape `\ufeff`, which means the same in JSON: JSONSerialization drops a raw U+FEFF at the
    /// start of a string or after an escape (a vocabulary entry "\u{FEFF}" read back as "").
    /// Outside strings U+FEFF is not JSON whitespace, so the escape is as invalid there as it was.
    static func escapingByteOrderMarks(_ header: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(header.count)
        var i = header.startIndex
        while i < header.endIndex {
            if header[i] == 0xEF, i + 2 < header.endIndex, header[i + 1] == 0xBB, header[i + 2] == 0xBF {
                out += Array("\\ufeff".utf8)
                i += 3
            } else {
                out.append(header[i])
                i += 1
            }
        }
        return out
    }

    static func appendLittleEndian(_ values: [Float], to bytes: inout [UInt8]) {
        #if _endian(little)
        values.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #else
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        #endif
    }

    // MARK: Reader

    /// Decodes a whole safetensors buffer, converting every tensor to Float.
    /// Throws `SafetensorsError` for anything that is not a well-formed file.
    public static func decode(_ bytes: [UInt8]) throws -> (tensors: [String: SafetensorsTensor], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw SafetensorsError.tooShort(byteCount: bytes.count) }
        let headerLength = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= maximumHeaderLength, headerLength <= UInt64(bytes.count - 8) else {
            throw SafetensorsError.headerLengthBeyondFile(headerLength: headerLength, byteCount: bytes.count)
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = bytes[8..<dataStart]
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw SafetensorsError.invalidHeader(reason: "does not start with '{'")
        }
        guard String(bytes: headerBytes, encoding: .utf8) != nil else {
            throw SafetensorsError.invalidHeader(reason: "not UTF-8")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(escapingByteOrderMarks(headerBytes)))
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            throw SafetensorsError.invalidHeader(reason: detail ?? error.localizedDescription)
        }
        guard let header = object as? [String: Any] else {
            throw SafetensorsError.invalidHeader(reason: "top level is not an object")
        }

        var metadata: [String: String] = [:]
        if let raw = header["__metadata__"] {
            guard let dictionary = raw as? [String: Any] else {
                throw SafetensorsError.invalidMetadata(reason: "is not an object")
            }
            for (key, value) in dictionary {
                guard let string = value as? String else {
                    throw SafetensorsError.invalidMetadata(reason: "value for '\(key)' is not a string")
                }
                metadata[key] = string
            }
        }

        let dataByteCount = bytes.count - dataStart
        let entries = try header.filter { $0.key != "__metadata__" }
            .map { try Entry(name: $0.key, json: $0.value) }
            .sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }

        var tensors: [String: SafetensorsTensor] = [:]
        var expectedBegin = 0
        for entry in entries {
            guard entry.begin <= entry.end, entry.end <= dataByteCount else {
                throw SafetensorsError.offsetsOutOfRange(name: entry.name, begin: entry.begin, end: entry.end,
                                                         dataByteCount: dataByteCount)
            }
            guard entry.begin == expectedBegin else {
                throw SafetensorsError.notContiguous(name: entry.name, begin: entry.begin, expectedBegin: expectedBegin)
            }
            expectedBegin = entry.end
            let values = bytes.withUnsafeBytes { raw in
                convert(UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.begin)..<(dataStart + entry.end)]),
                        dtype: entry.dtype, count: entry.count)
            }
            tensors[entry.name] = SafetensorsTensor(name: entry.name, shape: entry.shape, values: values)
        }
        guard expectedBegin == dataByteCount else {
            throw SafetensorsError.trailingBytes(dataByteCount: dataByteCount, usedByteCount: expectedBegin)
        }
        return (tensors, metadata)
    }

    /// One header entry, checked for types, dtype and byte size (not yet for position).
    struct Entry {
        let name: String
        let dtype: String
        let shape: [Int]
        let count: Int
        let begin: Int
        let end: Int

        init(name: String, json: Any) throws {
            guard let fields = json as? [String: Any] else {
                throw SafetensorsError.malformedEntry(name: name, reason: "entry is not an object")
            }
            guard let dtype = fields["dtype"] as? String else {
                throw SafetensorsError.malformedEntry(name: name, reason: "missing or non-string 'dtype'")
            }
            guard let shape = Entry.naturals(fields["shape"]) else {
                throw SafetensorsError.malformedEntry(name: name, reason: "'shape' is not a list of non-negative integers")
            }
            guard let offsets = Entry.naturals(fields["data_offsets"]), offsets.count == 2 else {
                throw SafetensorsError.malformedEntry(name: name, reason: "'data_offsets' is not two non-negative integers")
            }
            guard let size = Safetensors.dtypeSizes[dtype] else {
                throw SafetensorsError.unknownDType(name: name, dtype: dtype)
            }
            var count = 1
            for d in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else {
                    throw SafetensorsError.malformedEntry(name: name, reason: "shape \(shape) overflows")
                }
                count = product
            }
            let (expected, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow else {
                throw SafetensorsError.malformedEntry(name: name, reason: "shape \(shape) overflows")
            }
            if offsets[1] >= offsets[0], offsets[1] - offsets[0] != expected {
                throw SafetensorsError.sizeMismatch(name: name, shape: shape, dtype: dtype, expectedBytes: expected,
                                                    actualBytes: offsets[1] - offsets[0])
            }
            guard Safetensors.readableDTypes.contains(dtype) else {
                throw SafetensorsError.unsupportedDType(name: name, dtype: dtype)
            }
            (self.name, self.dtype, self.shape, self.count) = (name, dtype, shape, count)
            (self.begin, self.end) = (offsets[0], offsets[1])
        }

        /// A JSON array of non-negative integers. Booleans and numbers written with a fraction or
        /// exponent (Objective-C types "c", "f", "d") are refused, as the reference's usize parse does.
        static func naturals(_ json: Any?) -> [Int]? {
            guard let array = json as? [Any] else { return nil }
            var result: [Int] = []
            for element in array {
                guard let number = element as? NSNumber,
                      !["c", "f", "d"].contains(String(cString: number.objCType)),
                      let value = Int(exactly: number.int64Value), value >= 0 else { return nil }
                result.append(value)
            }
            return result
        }
    }

    /// Little-endian elements of `dtype` → Float. `raw` holds exactly `count` elements.
    static func convert(_ raw: UnsafeRawBufferPointer, dtype: String, count: Int) -> [Float] {
        switch dtype {
        case "F32":
            return (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        case "F64":
            return (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
        case "F16":
            return (0..<count).map { floatFromHalf(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case "BF16":
            return (0..<count).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) << 16) }
        default:
            preconditionFailure("dtype \(dtype) passed validation but has no converter")
        }
    }

    /// IEEE binary16 bits → Float, exactly (every half value is a float value), without `Float16`
    /// (missing on macOS x86_64): subnormals are renormalised, infinities and NaNs keep their bits.
    static func floatFromHalf(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x03FF)
        switch exponent {
        case 0x1F:
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        case 0:
            // ±0 or subnormal: value = mantissa · 2^-24.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        default:
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }
}
