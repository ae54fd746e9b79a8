#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads through POSIX calls, so failures carry the system's reason (errno).
enum FileBytes {
    /// Every byte of the file at `path`. Throws `CorpusError.unreadable` with strerror's text.
    static func contents(path: String) throws -> [UInt8] {
        let fd = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw unreadable(path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw unreadable(path) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw CorpusError.unreadable(path: path, reason: "is a directory")
        }
        // The size is a hint only: files may change under us, so read until end of file.
        var bytes = [UInt8](repeating: 0, count: max(Int(info.st_size), 0) + 1)
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(bytes.count, 4096))) }
            let got = bytes.withUnsafeMutableBytes { raw in
                retryingInterrupts { read(fd, raw.baseAddress! + filled, raw.count - filled) }
            }
            guard got >= 0 else { throw unreadable(path) }
            if got == 0 { break }
            filled += got
        }
        bytes.removeLast(bytes.count - filled)
        return bytes
    }

    private static func unreadable(_ path: String) -> CorpusError {
        CorpusError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }

    /// Repeats a call that fails with EINTR (a signal arrived before any data moved).
    private static func retryingInterrupts<R: BinaryInteger>(_ call: () -> R) -> R {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }
}
