#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The symbol ids of a corpus, stored compactly: 1 byte per token when the vocabulary has at
/// most 256 symbols, 2 bytes up to 65,536, else 4. The bytes are in memory or memory-mapped
/// from a token file (`TokenCache`), read-only, so every local process of a run shares one
/// copy through the page cache and touches only the pages of its own streams. Slices share
/// the storage (the train and validation splits cost nothing).
public struct TokenStore: RandomAccessCollection, Equatable, ExpressibleByArrayLiteral, @unchecked Sendable {
    /// Owns the bytes: freed or unmapped when the last store that views them goes.
    final class Storage {
        let base: UnsafeRawPointer
        let width: Int
        private let release: () -> Void

        init(base: UnsafeRawPointer, width: Int, release: @escaping () -> Void) {
            self.base = base
            self.width = width
            self.release = release
        }

        deinit { release() }
    }

    let storage: Storage
    /// First token of this view within the storage.
    let offset: Int
    public let count: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    /// Bytes per token: 1, 2 or 4.
    public var width: Int { storage.width }

    /// The bytes per token a vocabulary of `size` symbols needs.
    public static func width(vocabularySize size: Int) -> Int { size <= 1 << 8 ? 1 : size <= 1 << 16 ? 2 : 4 }

    @inline(__always)
    public subscript(i: Int) -> Int32 {
        precondition(i >= 0 && i < count, "token index \(i) outside 0..<\(count)")
        let j = offset + i
        switch storage.width {
        case 1: return Int32(storage.base.load(fromByteOffset: j, as: UInt8.self))
        case 2: return Int32(storage.base.loadUnaligned(fromByteOffset: 2 * j, as: UInt16.self))
        default: return storage.base.loadUnaligned(fromByteOffset: 4 * j, as: Int32.self)
        }
    }

    /// `ids` (each in 0..<vocabularySize) in memory at the width the vocabulary needs.
    public init(_ ids: some Collection<Int32>, vocabularySize: Int) {
        let width = Self.width(vocabularySize: vocabularySize)
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(1, ids.count * width), alignment: 8)
        for (i, id) in ids.enumerated() {
            switch width {
            case 1: bytes.storeBytes(of: UInt8(id), toByteOffset: i, as: UInt8.self)
            case 2: bytes.storeBytes(of: UInt16(id), toByteOffset: 2 * i, as: UInt16.self)
            default: bytes.storeBytes(of: id, toByteOffset: 4 * i, as: Int32.self)
            }
        }
        storage = Storage(base: UnsafeRawPointer(bytes), width: width) { bytes.deallocate() }
        offset = 0
        count = ids.count
    }

    public init(arrayLiteral ids: Int32...) {
        self.init(ids, vocabularySize: Int(ids.max() ?? 0) + 1)
    }

    init(storage: Storage, offset: Int, count: Int) {
        self.storage = storage
        self.offset = offset
        self.count = count
    }

    /// Tokens `range` of this view, sharing its storage.
    public func slice(_ range: Range<Int>) -> TokenStore {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice \(range) outside 0..<\(count)")
        return TokenStore(storage: storage, offset: offset + range.lowerBound, count: range.count)
    }

    /// Copies tokens start..<start+count as Int32 ids into `destination`.
    @inline(__always)
    public func copy(from start: Int, count n: Int, into destination: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && start + n <= count)
        let j = offset + start
        switch storage.width {
        case 1:
            let p = storage.base.assumingMemoryBound(to: UInt8.self) + j
            for i in 0..<n { destination[i] = Int32(p[i]) }
        case 2:
            for i in 0..<n { destination[i] = Int32(storage.base.loadUnaligned(fromByteOffset: 2 * (j + i), as: UInt16.self)) }
        default:
            for i in 0..<n { destination[i] = storage.base.loadUnaligned(fromByteOffset: 4 * (j + i), as: Int32.self) }
        }
    }

    /// The raw token bytes of this view (count · width bytes), for writing a token file.
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.base + offset * storage.width, count: count * storage.width)
    }

    public static func == (a: TokenStore, b: TokenStore) -> Bool { a.elementsEqual(b) }

    /// `count` tokens of `width` bytes mapped read-only from `path` at byte `offset` (a
    /// multiple of the page size). Throws `CorpusError.unreadable` when it cannot be mapped.
    static func mapped(path: String, byteOffset: Int, count: Int, width: Int) throws -> TokenStore {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CorpusError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let length = byteOffset + Swift.max(1, count * width)
        guard let region = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), region != MAP_FAILED else {
            throw CorpusError.unreadable(path: path, reason: "mmap: \(String(cString: strerror(errno)))")
        }
        let storage = Storage(base: UnsafeRawPointer(region + byteOffset), width: width) { munmap(region, length) }
        return TokenStore(storage: storage, offset: 0, count: count)
    }
}
