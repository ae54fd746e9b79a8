#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Token files: a corpus file of at least `minimumBytes` is encoded once into
/// `directory/tokens-KEY.bin` and later memory-mapped instead of decoded, by this process and
/// by every other local process of the run (its workers), which then share one copy of the
/// tokens. KEY is derived from the corpus's real path, size, modification time and inode; a
/// file whose header does not match them is ignored and rewritten.
///
///     "RECURTK2"  UInt32 n (little endian)  n bytes of JSON header  zero padding
///     tokens at the next multiple of 4096: count · width bytes
///
/// Header: `source`, `size`, `mtime_ns`, `inode`, `count`, `width`, `digest` (SHA-256 of the
/// corpus bytes), `vocabulary` (the symbols in id order, as strings).
public struct TokenCache: Sendable {
    public var directory: URL
    /// Smaller corpora are decoded in memory each time (it is quicker than a file).
    public var minimumBytes: Int

    public static let defaultMinimumBytes = 16 << 20
    /// Version 2: a leading byte order mark is no longer a token (version 1 files of such a
    /// corpus hold one token more, so they are not read).
    static let magic = Array("RECURTK2".utf8)
    static let page = 4096

    public init(directory: URL, minimumBytes: Int = TokenCache.defaultMinimumBytes) {
        self.directory = directory
        self.minimumBytes = minimumBytes
    }

    struct Header: Codable, Equatable {
        var source: String
        var size: Int
        var mtime_ns: Int
        var inode: UInt64
        var count: Int
        var width: Int
        var digest: String
        var vocabulary: [String]
    }

    /// What identifies a corpus file's contents without reading them.
    struct Identity: Equatable {
        var source: String, size: Int, mtimeNanoseconds: Int, inode: UInt64
    }

    static func identity(of path: String) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        return Identity(source: real, size: Int(info.st_size),
                        mtimeNanoseconds: Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec),
                        inode: UInt64(info.st_ino))
    }

    func file(for identity: Identity) -> URL {
        let key = SHA256.hex(Array("\(identity.source)\n\(identity.size)\n\(identity.mtimeNanoseconds)\n\(identity.inode)".utf8))
        return directory.appendingPathComponent("tokens-\(key.prefix(24)).bin")
    }

    /// The corpus at `path` from its token file, or nil when there is none for its current
    /// contents.
    func read(path: String, identity: Identity) -> Corpus? {
        let url = file(for: identity)
        guard let handle = FileHandle(forReadingAtPath: url.path) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 12), head.count == 12, Array(head.prefix(8)) == Self.magic else { return nil }
        let length = Int(head[8]) | Int(head[9]) << 8 | Int(head[10]) << 16 | Int(head[11]) << 24
        guard let json = try? handle.read(upToCount: length), json.count == length,
              let header = try? JSONDecoder().decode(Header.self, from: json),
              header.source == identity.source, header.size == identity.size,
              header.mtime_ns == identity.mtimeNanoseconds, header.inode == identity.inode else { return nil }
        let scalars = header.vocabulary.compactMap { $0.unicodeScalars.count == 1 ? $0.unicodeScalars.first : nil }
        guard scalars.count == header.vocabulary.count,
              let tokens = try? TokenStore.mapped(path: url.path, byteOffset: Self.tokenOffset(headerBytes: length),
                                                  count: header.count, width: header.width) else { return nil }
        return Corpus(name: path, vocabulary: Vocabulary(sortedDistinct: scalars), tokens: tokens, digest: header.digest)
    }

    /// Writes `corpus`'s token file (atomically: a temporary file renamed into place) and
    /// returns the corpus mapped from it.
    func write(_ corpus: Corpus, identity: Identity) throws -> Corpus {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let header = Header(source: identity.source, size: identity.size, mtime_ns: identity.mtimeNanoseconds,
                            inode: identity.inode, count: corpus.count, width: corpus.tokens.width, digest: corpus.digest,
                            vocabulary: corpus.vocabulary.scalars.map { String($0) })
        let json = try JSONEncoder().encode(header)
        var prefix = Self.magic
        let n = UInt32(json.count)
        prefix += [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)]
        prefix += Array(json)
        prefix += [UInt8](repeating: 0, count: Self.tokenOffset(headerBytes: json.count) - prefix.count)
        let target = file(for: identity)
        let temporary = target.path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(prefix)),
              let handle = FileHandle(forWritingAtPath: temporary) else {
            throw CorpusError.unreadable(path: temporary, reason: "cannot create the token file")
        }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: corpus.tokens.bytes.baseAddress!),
                                              count: corpus.tokens.bytes.count, deallocator: .none))
            try handle.synchronize()
            try handle.close()
            guard rename(temporary, target.path) == 0 else { throw CorpusError.unreadable(path: target.path, reason: String(cString: strerror(errno))) }
        } catch {
            unlink(temporary)
            throw error
        }
        guard let mapped = read(path: corpus.name, identity: identity) else {
            throw CorpusError.unreadable(path: target.path, reason: "the token file just written does not read back")
        }
        return mapped
    }

    static func tokenOffset(headerBytes: Int) -> Int { (12 + headerBytes + page - 1) / page * page }
}
