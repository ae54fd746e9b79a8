/// The symbols a model reads and writes: the distinct Unicode scalars of a corpus, sorted by
/// code point, so id i is the i-th smallest scalar (V = `count`).
///
/// Scalars, not `Character`s: "\r\n" is two symbols and "e" + U+0301 is two, exactly as Python's
/// `sorted(set(text))` sees them. Encoding goes through a dense table for scalars below U+0800
/// (every 1- and 2-byte UTF-8 symbol) and a binary search above.
public struct Vocabulary: Equatable, Hashable, Sendable {
    /// Scalars sorted strictly ascending; the id of `scalars[i]` is i.
    public let scalars: [Unicode.Scalar]
    /// id + 1 for code points below `tableSize`, 0 where absent.
    private let lowTable: [Int32]
    private static let tableSize = 0x800

    /// The distinct scalars of `scalars`, sorted by code point (order and repeats do not matter).
    public init(scalars: some Sequence<Unicode.Scalar>) {
        let sorted = Set(scalars).sorted { $0.value < $1.value }
        self.init(sortedDistinct: sorted)
    }

    /// The vocabulary of a text: its distinct scalars.
    public init(of text: String) {
        self.init(scalars: text.unicodeScalars)
    }

    /// Trusts that `scalars` is strictly ascending (checked in debug builds).
    init(sortedDistinct scalars: [Unicode.Scalar]) {
        assert(zip(scalars, scalars.dropFirst()).allSatisfy { $0.value < $1.value })
        precondition(scalars.count < Int(Int32.max))
        self.scalars = scalars
        var table = [Int32](repeating: 0, count: Self.tableSize)
        for (id, scalar) in scalars.enumerated() where scalar.value < Self.tableSize {
            table[Int(scalar.value)] = Int32(id + 1)
        }
        lowTable = table
    }

    /// V, the number of symbols.
    public var count: Int { scalars.count }

    /// The id of a scalar, or nil when it is not in the vocabulary.
    @inline(__always)
    public func id(of scalar: Unicode.Scalar) -> Int32? { id(ofCodePoint: scalar.value) }

    /// The id of a code point, or nil when it is not in the vocabulary.
    @inline(__always)
    public func id(ofCodePoint value: UInt32) -> Int32? {
        if value < Self.tableSize {
            let entry = lowTable[Int(value)]
            return entry == 0 ? nil : entry - 1
        }
        var low = 0, high = scalars.count
        while low < high {
            let mid = (low + high) / 2
            if scalars[mid].value < value { low = mid + 1 } else { high = mid }
        }
        return low < scalars.count && scalars[low].value == value ? Int32(low) : nil
    }

    /// The ids of every scalar of `text`, in order.
    ///
    /// Throws `VocabularyError.unknownCharacters` naming each scalar that has no id.
    public func encode(_ text: String) throws -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.utf8.count)
        var unknown: [Unicode.Scalar] = []
        for scalar in text.unicodeScalars {
            if let id = id(of: scalar) {
                ids.append(id)
            } else if !unknown.contains(scalar) {
                unknown.append(scalar)
            }
        }
        guard unknown.isEmpty else { throw VocabularyError.unknownCharacters(unknown) }
        return ids
    }

    /// The text spelled by `ids`; every id must be in 0 ..< count.
    public func decode(_ ids: some Sequence<Int32>) -> String {
        var text = String.UnicodeScalarView()
        for id in ids {
            precondition(id >= 0 && Int(id) < scalars.count, "id \(id) outside vocabulary of \(scalars.count)")
            text.append(scalars[Int(id)])
        }
        return String(text)
    }

    /// SHA-256 hex of the scalars' UTF-8 bytes concatenated in id order (UTF-8 is
    /// self-delimiting, so this names the vocabulary and its order).
    public var digest: String {
        var bytes: [UInt8] = []
        for scalar in scalars { bytes.append(contentsOf: UTF8.encode(scalar)!) }
        return SHA256.hex(bytes)
    }

    public static func == (a: Vocabulary, b: Vocabulary) -> Bool { a.scalars == b.scalars }
    public func hash(into hasher: inout Hasher) { hasher.combine(scalars) }
}

/// Codable as a JSON array of one-scalar strings in id order, e.g. `["\n", " ", "!", "A"]`:
/// readable in checkpoint metadata and loadable from Python as `list` → `dict(enumerate(...))`.
extension Vocabulary: Codable {
    public init(from decoder: Decoder) throws {
        let strings = try decoder.singleValueContainer().decode([String].self)
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(strings.count)
        for (index, string) in strings.enumerated() {
            let view = string.unicodeScalars
            guard view.count == 1, let scalar = view.first else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "vocabulary entry \(index) must be one Unicode scalar, got \(view.count)"))
            }
            if let previous = scalars.last, previous.value >= scalar.value {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "vocabulary entry \(index) \(Self.quoted(scalar)) is not after \(Self.quoted(previous)): entries must be distinct and sorted by code point"))
            }
            scalars.append(scalar)
        }
        self.init(sortedDistinct: scalars)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(scalars.map { String($0) })
    }

    /// A scalar in double quotes with Swift escapes for invisible ones: `"é"`, `"\n"`, `"\u{7F}"`.
    public static func quoted(_ scalar: Unicode.Scalar) -> String {
        "\"" + scalar.escaped(asASCII: false) + "\""
    }
}

/// Text that the vocabulary cannot encode.
public enum VocabularyError: Error, CustomStringConvertible, Equatable {
    /// The scalars without an id, in order of first appearance.
    case unknownCharacters([Unicode.Scalar])

    public var description: String {
        switch self {
        case .unknownCharacters(let scalars):
            let shown = scalars.prefix(20).map(Vocabulary.quoted).joined(separator: ", ")
            let more = scalars.count > 20 ? " and \(scalars.count - 20) more" : ""
            return "characters not in the vocabulary: \(shown)\(more)"
        }
    }
}
