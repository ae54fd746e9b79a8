import Foundation

/// A training text as model input: its vocabulary and the id of every Unicode scalar.
///
/// Reading follows the data-layout contract: strict UTF-8, split into scalars (not Swift
/// `Character`s, so "\r\n" is two tokens), vocabulary = distinct scalars sorted by code point.
/// A byte order mark at the start of the file is not text and is dropped (Python's
/// `utf-8-sig`); U+FEFF anywhere else is an ordinary scalar.
/// The train split is the first floor(n·(1-f)) tokens, validation the rest (see `split`).
public struct Corpus: Sendable {
    /// The path it was loaded from, or the name given (e.g. "builtin").
    public let name: String
    public let vocabulary: Vocabulary
    /// Ids of all n scalars, in order: compact, in memory or mapped from a token file.
    public let tokens: TokenStore
    /// SHA-256 hex of the file's bytes (a leading byte order mark included: `sha256sum`'s
    /// value), for the corpus fingerprint.
    public let digest: String

    /// n, the number of scalars.
    public var count: Int { tokens.count }

    /// The largest corpus file read: 4 GiB. Decoding holds the bytes and the compact ids (1 or
    /// 2 bytes per character for most vocabularies), about 2 bytes per byte of an ASCII text;
    /// a corpus mapped from its token file needs none of that.
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
        guard bytes.count > byteOrderMarkLength(bytes) else { throw CorpusError.empty(path: path) }
        return try bytes.withUnsafeBufferPointer { buffer in
            do throws(StrictUTF8.Failure) {
                return try Corpus(utf8: buffer, name: path)
            } catch let failure {
                throw CorpusError.invalidUTF8(path: path, offset: failure.offset,
                                              byte: failure.byte, reason: failure.reason)
            }
        }
    }

    /// A corpus from text already in memory; `text` must not be empty (nor only a byte order mark).
    public init(text: String, name: String) {
        precondition(text.utf8.count > Self.byteOrderMarkLength(text.utf8), "corpus \(name) is empty")
        var text = text
        self = text.withUTF8 { buffer in
            // A Swift String is always valid UTF-8, so decoding cannot fail.
            try! Corpus(utf8: buffer, name: name)
        }
    }

    /// 3 when `bytes` start with the UTF-8 byte order mark EF BB BF, else 0.
    static func byteOrderMarkLength(_ bytes: some Collection<UInt8>) -> Int {
        bytes.starts(with: TextLines.byteOrderMark) ? TextLines.byteOrderMark.count : 0
    }

    /// Bytes decoded at a time: the scratch of one chunk's code points is 4× this.
    static let chunkBytes = 1 << 22

    /// Decodes in two passes over chunks of `chunkBytes`, so that memory holds only the bytes,
    /// one chunk's code points and the compact ids: the first finds the vocabulary (presence
    /// table below U+0800, a set above), the second maps every code point to its id at the
    /// width the vocabulary needs. A failure is reported as decoding the whole text at once would
    /// (offsets count from the file's first byte). A leading byte order mark is skipped, so
    /// every process that loads the file (coordinator, workers, a resumed run, the token file)
    /// sees the same tokens; the digest still covers it.
    init(utf8 bytes: UnsafeBufferPointer<UInt8>, name: String, chunkBytes: Int = Corpus.chunkBytes) throws(StrictUTF8.Failure) {
        let scratch = UnsafeMutableBufferPointer<Int32>.allocate(capacity: min(bytes.count, chunkBytes + 4))
        defer { scratch.deallocate() }
        let textStart = Self.byteOrderMarkLength(bytes)
        /// Calls `body` with the code points of each chunk, in order.
        func forEachChunk(_ body: (UnsafeMutableBufferPointer<Int32>) -> Void) throws(StrictUTF8.Failure) {
            var start = textStart
            while start < bytes.count {
                let end = StrictUTF8.chunkEnd(bytes, near: min(start + chunkBytes, bytes.count), after: start)
                let (written, stop) = try StrictUTF8.decode(bytes, range: start..<end, into: scratch)
                body(UnsafeMutableBufferPointer(rebasing: scratch[..<written]))
                start = stop
            }
        }

        let seenLow = UnsafeMutableBufferPointer<Bool>.allocate(capacity: 0x800)
        seenLow.initialize(repeating: false)
        defer { seenLow.deallocate() }
        var seenHigh = Set<Int32>()
        var count = 0
        try forEachChunk { values in
            for value in values {
                if value < 0x800 { seenLow[Int(value)] = true } else { seenHigh.insert(value) }
            }
            count += values.count
        }
        var scalars = seenLow.indices.filter { seenLow[$0] }.map { Unicode.Scalar(UInt32($0))! }
        scalars += seenHigh.sorted().map { Unicode.Scalar(UInt32($0))! }
        let vocabulary = Vocabulary(sortedDistinct: scalars)

        let width = TokenStore.width(vocabularySize: vocabulary.count)
        let ids = UnsafeMutableRawPointer.allocate(byteCount: max(1, count * width), alignment: 8)
        var i = 0
        try! forEachChunk { values in   // the first pass decoded the same bytes
            for value in values {
                let id = vocabulary.id(ofCodePoint: UInt32(value))!
                switch width {
                case 1: ids.storeBytes(of: UInt8(id), toByteOffset: i, as: UInt8.self)
                case 2: ids.storeBytes(of: UInt16(id), toByteOffset: 2 * i, as: UInt16.self)
                default: ids.storeBytes(of: id, toByteOffset: 4 * i, as: Int32.self)
                }
                i += 1
            }
        }
        self.name = name
        self.vocabulary = vocabulary
        self.tokens = TokenStore(storage: TokenStore.Storage(base: UnsafeRawPointer(ids), width: width) { ids.deallocate() },
                                 offset: 0, count: count)
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
