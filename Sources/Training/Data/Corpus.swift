import Foundation

/// A training text as model input: its vocabulary and the id of every Unicode scalar.
///
/// Reading follows the data-layout contract: strict UTF-8, split into scalars (not Swift
/// `Character`s, so "\r\n" is two tokens), vocabulary = distinct scalars sorted by code point.
/// The train split is the first floor(n·(1-f)) tokens, validation the rest (see `split`).
public struct Corpus: Sendable {
    /// The path it was loaded from, or the name given (e.g. "builtin").
    public let name: String
    public let vocabulary: Vocabulary
    /// Ids of all n scalars, in order: compact, in memory or mapped from a token file.
    public let tokens: TokenStore
    /// SHA-256 hex of the UTF-8 bytes, for the corpus fingerprint.
    public let digest: String

    /// n, the number of scalars.
    public var count: Int { tokens.count }

    /// The largest corpus file read: 4 GiB. Decoding needs about 6 bytes of memory per byte
    /// of text for a while (the bytes, one Int32 id per scalar, the compact tokens); a corpus
    /// mapped from its token file needs none of that.
    public static let maximumFileBytes = 4 << 30

    /// Reads and decodes the regular file at `path` (at most `maximumFileBytes`). With a
    /// `cache`, a file of its minimum size or more is mapped from its token file, written on
    /// first use; `log` hears which (and why a token file could not be written).
    ///
    /// Throws `CorpusError.unreadable`, `.notRegularFile`, `.tooLarge`, `.empty` or
    /// `.invalidUTF8` (with the byte offset).
    public static func load(path: String, maximumBytes: Int = maximumFileBytes, cache: TokenCache? = nil,
                            log: (String) -> Void = { _ in }) throws -> Corpus {
        guard let cache, let identity = TokenCache.identity(of: path), identity.size >= cache.minimumBytes else {
            return try decode(FileBytes.contents(path: path, maximumBytes: maximumBytes), name: path)
        }
        if let mapped = cache.read(path: path, identity: identity) {
            log("tokens of \(path) mapped from \(cache.file(for: identity).path)")
            return mapped
        }
        let start = Date()
        let corpus = try decode(FileBytes.contents(path: path, maximumBytes: maximumBytes), name: path)
        let seconds = Date().timeIntervalSince(start)
        do {
            let mapped = try cache.write(corpus, identity: identity)
            log(String(format: "encoded %@ in %.1f s into %@ (%d byte(s) per token)", path, seconds,
                       cache.file(for: identity).path, corpus.tokens.width))
            return mapped
        } catch {
            log("could not write a token file for \(path) in \(cache.directory.path): \(error)")
            return corpus
        }
    }

    init(name: String, vocabulary: Vocabulary, tokens: TokenStore, digest: String) {
        self.name = name
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.digest = digest
    }

    /// A file's bytes → corpus, as `load` decodes them (also the fuzzing entry point).
    /// Throws `CorpusError.empty` or `.invalidUTF8`.
    @_spi(Fuzzing) public static func decode(_ bytes: [UInt8], name path: String) throws -> Corpus {
        guard !bytes.isEmpty else { throw CorpusError.empty(path: path) }
        return try bytes.withUnsafeBufferPointer { buffer in
            do throws(StrictUTF8.Failure) {
                return try Corpus(utf8: buffer, name: path)
            } catch let failure {
                throw CorpusError.invalidUTF8(path: path, offset: failure.offset,
                                              byte: failure.byte, reason: failure.reason)
            }
        }
    }

    /// A corpus from text already in memory; `text` must not be empty.
    public init(text: String, name: String) {
        precondition(!text.isEmpty, "corpus \(name) is empty")
        var text = text
        self = text.withUTF8 { buffer in
            // A Swift String is always valid UTF-8, so decoding cannot fail.
            try! Corpus(utf8: buffer, name: name)
        }
    }

    /// Decodes, builds the vocabulary (presence table below U+0800, a set above), then maps
    /// code points to ids in place.
    private init(utf8 bytes: UnsafeBufferPointer<UInt8>, name: String) throws(StrictUTF8.Failure) {
        var failure: StrictUTF8.Failure?
        var ids = [Int32](unsafeUninitializedCapacity: bytes.count) { output, initialized in
            do throws(StrictUTF8.Failure) {
                initialized = try StrictUTF8.decode(bytes, into: output)
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }

        var seenLow = [Bool](repeating: false, count: 0x800)
        var seenHigh = Set<Int32>()
        ids.withUnsafeBufferPointer { values in
            seenLow.withUnsafeMutableBufferPointer { seen in
                for value in values {
                    if value < 0x800 { seen[Int(value)] = true } else { seenHigh.insert(value) }
                }
            }
        }
        var scalars = seenLow.indices.filter { seenLow[$0] }.map { Unicode.Scalar(UInt32($0))! }
        scalars += seenHigh.sorted().map { Unicode.Scalar(UInt32($0))! }
        let vocabulary = Vocabulary(sortedDistinct: scalars)

        ids.withUnsafeMutableBufferPointer { values in
            for i in values.indices {
                values[i] = vocabulary.id(ofCodePoint: UInt32(values[i]))!
            }
        }
        self.name = name
        self.vocabulary = vocabulary
        self.tokens = TokenStore(ids, vocabularySize: vocabulary.count)
        self.digest = SHA256.hex(UnsafeRawBufferPointer(bytes))
    }

    /// nTrain = floor(n·(1-f)), the length of the train split. `f` must be in [0, 1).
    public static func trainCount(total n: Int, validationFraction f: Double) -> Int {
        precondition(f >= 0 && f < 1, "validation fraction must be in [0, 1), got \(f)")
        return Int((Double(n) * (1 - f)).rounded(.down))
    }

    /// Train = the first floor(n·(1-f)) tokens, validation = the rest (empty when f = 0).
    public func split(validationFraction f: Double) -> (train: TokenStore, validation: TokenStore) {
        let nTrain = Self.trainCount(total: count, validationFraction: f)
        return (tokens.slice(0..<nTrain), tokens.slice(nTrain..<count))
    }

    /// Throws `CorpusError.tooShort` unless the train split gives every one of `streams`
    /// streams at least one window: floor((nTrain-1)/(N·T)) ≥ 1, i.e. nTrain ≥ N·T + 1.
    public func requireTrainingLength(streams: Int, window: Int, validationFraction f: Double) throws {
        precondition(streams > 0 && window > 0)
        let nTrain = Self.trainCount(total: count, validationFraction: f)
        let required = StreamLayout.minimumTrainCount(streams: streams, window: window)
        guard nTrain >= required else {
            throw CorpusError.tooShort(name: name, totalCount: count, trainCount: nTrain,
                                       requiredTrainCount: required, streams: streams,
                                       window: window, validationFraction: f)
        }
    }
}
