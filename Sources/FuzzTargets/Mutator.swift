import Dispatch
import Training

/// A deterministic, structure-aware mutator: the same seed gives the same inputs. It knows the
/// shapes our decoders read — protobuf varints and length prefixes, the 8-byte little-endian
/// length of safetensors, JSON numbers and tokens — and edits them towards boundary values,
/// besides the usual bit flips, byte inserts and deletes, and splices of valid encodings.
public struct Mutator {
    private var random: SeededGenerator
    private let dictionary: [[UInt8]]

    public init(seed: UInt64, dictionary: [[UInt8]]) {
        random = SeededGenerator(seed: seed)
        self.dictionary = dictionary
    }

    static let boundaryBytes: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x2C, 0x7B, 0x7D]
    static let boundaryIntegers: [UInt64] = [0, 1, 2, 7, 8, 127, 128, 255, 256, 16_383, 16_384, 65_535, 1 << 20,
                                             (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 53,
                                             (1 << 63) - 1, 1 << 63, UInt64.max - 7, UInt64.max]
    static let boundaryNumbers = ["0", "-0", "-1", "-5", "1", "2", "65", "255", "1114112", "2147483647", "2147483648",
                                  "4294967296", "1099511627776", "4611686018427387904", "9223372036854775807",
                                  "9223372036854775808", "-9223372036854775809", "1e309", "-1e309", "1.5", "1e2",
                                  "0.0000001", "NaN", "Infinity"]

    mutating func index(_ bound: Int) -> Int { Int.random(in: 0..<bound, using: &random) }

    /// 1–4 mutations of `input`; `others` provides material for splices.
    public mutating func mutate(_ input: [UInt8], others: [[UInt8]]) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + index(4)) { mutateOnce(&bytes, others: others) }
        return bytes
    }

    mutating func mutateOnce(_ bytes: inout [UInt8], others: [[UInt8]]) {
        if bytes.isEmpty {
            bytes = others.isEmpty ? [UInt8(index(256))] : others[index(others.count)]
            return
        }
        let position = index(bytes.count)
        switch index(12) {
        case 0:  // bit flip
            bytes[position] ^= 1 << UInt8(index(8))
        case 1:  // boundary byte
            bytes[position] = Self.boundaryBytes[index(Self.boundaryBytes.count)]
        case 2:  // random bytes inserted
            bytes.insert(contentsOf: (0..<(1 + index(8))).map { _ in UInt8(index(256)) }, at: position)
        case 3:  // range deleted
            bytes.removeSubrange(position..<min(bytes.count, position + 1 + index(16)))
        case 4:  // range duplicated
            let end = min(bytes.count, position + 1 + index(32))
            bytes.insert(contentsOf: Array(bytes[position..<end]), at: end)
        case 5:  // splice: our prefix, another encoding's suffix
            guard let other = others.randomElement(using: &random), !other.isEmpty else { return }
            bytes = Array(bytes[..<position]) + Array(other[index(other.count)...])
        case 6:  // dictionary token inserted
            guard !dictionary.isEmpty else { return }
            bytes.insert(contentsOf: dictionary[index(dictionary.count)], at: position)
        case 7:  // dictionary token over a short range
            guard !dictionary.isEmpty else { return }
            bytes.replaceSubrange(position..<min(bytes.count, position + 1 + index(6)), with: dictionary[index(dictionary.count)])
        case 8:  // varint (protobuf tag, length or scalar) replaced by a boundary value
            let end = Self.varintEnd(bytes, from: position)
            bytes.replaceSubrange(position..<end, with: Self.varint(Self.boundaryIntegers[index(Self.boundaryIntegers.count)]))
        case 9:  // JSON/text number replaced by a boundary number
            guard let run = Self.numberRun(bytes, near: position) else { return }
            bytes.replaceSubrange(run, with: Array(Self.boundaryNumbers[index(Self.boundaryNumbers.count)].utf8))
        case 10: // little-endian UInt64 (the safetensors header length at 0, offsets elsewhere)
            let at = index(2) == 0 ? 0 : position & ~7
            guard at + 8 <= bytes.count else { return }
            var value = Self.boundaryIntegers[index(Self.boundaryIntegers.count)]
            if index(2) == 0, at == 0 { value = UInt64(bytes.count - 8) &+ UInt64(bitPattern: Int64(index(17) - 8)) }
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(at..<(at + 8), with: $0) }
        default: // truncation
            bytes.removeSubrange(position...)
        }
    }

    /// End of the varint starting at `start` (at most 10 bytes, or the end of the input).
    static func varintEnd(_ bytes: [UInt8], from start: Int) -> Int {
        var end = start
        while end < bytes.count, end - start < 10 {
            end += 1
            if bytes[end - 1] < 0x80 { break }
        }
        return end
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value, out: [UInt8] = []
        repeat {
            out.append(UInt8(value & 0x7F) | (value >= 0x80 ? 0x80 : 0))
            value >>= 7
        } while value != 0
        return out
    }

    /// The run of digits, '-', '.', 'e' around the first digit at or after `position`.
    static func numberRun(_ bytes: [UInt8], near position: Int) -> Range<Int>? {
        func isNumberByte(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || b == 0x2D || b == 0x2E || b == 0x65 || b == 0x2B }
        guard let digit = bytes[position...].firstIndex(where: { (0x30...0x39).contains($0) })
                ?? bytes[..<position].lastIndex(where: { (0x30...0x39).contains($0) }) else { return nil }
        var start = digit, end = digit
        while start > 0, isNumberByte(bytes[start - 1]) { start -= 1 }
        while end < bytes.count, isNumberByte(bytes[end]) { end += 1 }
        return start..<end
    }
}

/// A bounded fuzzing run of one target with `Mutator`: every seed first, then mutations of
/// the seeds and of inputs that decoded (a cheap stand-in for coverage feedback: inputs that
/// still decode reach deepest). Stops at `seconds` or `maximumInputs`, whichever comes first.
public struct Campaign {
    public struct Result: Sendable {
        public var inputs = 0
        public var decoded = 0
        public var rejected = 0
        public var seconds = 0.0
        public var findings: [(input: [UInt8], message: String)] = []
        public var inputsPerSecond: Double { seconds > 0 ? Double(inputs) / seconds : 0 }
    }

    /// `beforeInput` sees each input before it runs (the executable keeps it for a crash report).
    public static func run(_ target: FuzzTarget, seed: UInt64, extraSeeds: [[UInt8]] = [], seconds: Double,
                           maximumInputs: Int = Int.max, maximumInputBytes: Int = 1 << 16,
                           beforeInput: ([UInt8]) -> Void = { _ in }) -> Result {
        var mutator = Mutator(seed: seed, dictionary: target.dictionary)
        let seeds = target.seeds() + extraSeeds
        var pool = seeds
        var result = Result()
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

        func execute(_ input: [UInt8]) {
            beforeInput(input)
            result.inputs += 1
            switch target.run(input) {
            case .decoded:
                result.decoded += 1
                if pool.count < seeds.count + 512, input.count <= maximumInputBytes { pool.append(input) }
            case .rejected:
                result.rejected += 1
            case .finding(let message):
                if result.findings.count < 10 { result.findings.append((input, message)) }
            }
        }
        for input in seeds { execute(input) }
        while result.inputs < maximumInputs {
            if result.inputs % 32 == 0, elapsed() >= seconds { break }
            let base = pool[mutator.index(pool.count)]
            var input = mutator.mutate(base, others: seeds)
            if input.count > maximumInputBytes { input.removeSubrange(maximumInputBytes...) }
            execute(input)
        }
        result.seconds = elapsed()
        return result
    }
}
