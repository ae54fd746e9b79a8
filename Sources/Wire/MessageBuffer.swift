/// Reusable output bytes for `WireCodec`'s encoders. Storage grows to the largest message seen
/// and is never shrunk or re-zeroed, so encoding the same weights every step touches no fresh
/// pages (a fresh 4 MiB array costs ~3 ms of page faults; a reused one ~0.15 ms).
public struct MessageBuffer {
    private var storage: [UInt8]
    /// Bytes of the last encoded message (a prefix of the storage).
    public private(set) var count: Int = 0

    public init(capacity: Int = 0) {
        storage = [UInt8](repeating: 0, count: capacity)
    }

    /// Bytes held, ≥ `count`.
    public var capacity: Int { storage.count }

    /// The last encoded message, valid only inside `body` (hand it to `zmq_send` there).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }

    /// A copy of the last encoded message (tests and tools; the hot path uses `withUnsafeBytes`).
    public var bytes: [UInt8] { Array(storage[..<count]) }

    /// Replaces the contents with `byteCount` bytes written by `write`, growing only if needed.
    mutating func overwrite(byteCount: Int, _ write: (UnsafeMutablePointer<UInt8>) -> Int) {
        precondition(byteCount > 0)
        if storage.count < byteCount {
            storage = []  // release the old storage before allocating the larger one
            storage = [UInt8](repeating: 0, count: byteCount)
        }
        let written = storage.withUnsafeMutableBufferPointer { write($0.baseAddress!) }
        precondition(written == byteCount, "protobuf-c packed \(written) bytes, sized \(byteCount)")
        count = byteCount
    }
}
