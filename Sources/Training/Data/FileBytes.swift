#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads through POSIX calls, so failures carry the system's reason (errno).
enum FileBytes {
    /// Every byte of the regular file at `path`, at most `maximumBytes` of them. Throws
    /// `CorpusError.unreadable` with strerror's text, `.notRegularFile` for devices, FIFOs,
    /// sockets and directories (checked on the open descriptor, before reading: /dev/zero would
    /// never end, a FIFO would block), and `.tooLarge` past the limit (before allocating).
    static func contents(path: String, maximumBytes: Int) throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        let fd = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        guard fd >= 0 else { throw unreadable(path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw unreadable(path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CorpusError.notRegularFile(path: path, kind: fileKind(info.st_mode))
        }
        let size = max(Int(info.st_size), 0)
        guard size <= maximumBytes else {
            throw CorpusError.tooLarge(path: path, byteCount: size, limit: maximumBytes)
        }
        // The size is a hint only: files may change under us, so read until end of file,
        // but never past the limit.
        var bytes = [UInt8](repeating: 0, count: size + 1)
        var filled = 0
        while true {
            if filled == bytes.count {
                guard filled <= maximumBytes else {
                    throw CorpusError.tooLarge(path: path, byteCount: filled, limit: maximumBytes)
                }
                bytes.append(contentsOf: repeatElement(0, count: min(max(bytes.count, 4096), maximumBytes + 1 - filled)))
            }
            let got = bytes.withUnsafeMutableBytes { raw in
                retryingInterrupts { read(fd, raw.baseAddress! + filled, raw.count - filled) }
            }
            guard got >= 0 else { throw unreadable(path) }
            if got == 0 { break }
            filled += got
        }
        guard filled <= maximumBytes else {
            throw CorpusError.tooLarge(path: path, byteCount: filled, limit: maximumBytes)
        }
        bytes.removeLast(bytes.count - filled)
        return bytes
    }

    /// "directory", "character device", … for a `st_mode` that is not a regular file.
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "directory"
        case S_IFCHR: return "character device"
        case S_IFBLK: return "block device"
        case S_IFIFO: return "FIFO"
        case S_IFSOCK: return "socket"
        case S_IFLNK: return "symbolic link"
        default: return "special file"
        }
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
