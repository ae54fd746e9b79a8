#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Why a checkpoint directory could not be written or read. Each case names the path and, for
/// system calls, the call and its errno text.
public enum AtomicDirectoryError: Error, Equatable, CustomStringConvertible {
    /// A file name that is empty, ".", "..", or contains "/" or NUL.
    case invalidFileName(String)
    /// The target exists and is not a directory: we refuse to replace a file with a checkpoint.
    case targetNotDirectory(path: String)
    /// A file the reader expected is not there.
    case missingFile(path: String)
    /// A system call failed: `function` on `path` with `errno`.
    case systemCall(function: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .invalidFileName(name):
            return "invalid file name '\(name)' in a checkpoint directory (empty, '.', '..', or contains '/')"
        case let .targetNotDirectory(path):
            return "\(path) exists and is not a directory; refusing to replace it"
        case let .missingFile(path):
            return "\(path): missing file (is this a complete checkpoint directory?)"
        case let .systemCall(function, path, code):
            return "\(path): \(function) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}

/// Writes a whole directory of files so that readers see either the old one or the new one:
///
///     parent/.name.tmp-<pid>-<random>   every file written and fsynced, then the dir fsynced
///     parent/name  → parent/.name.old-<pid>-<random>   (if it exists)
///     parent/.name.tmp-…  → parent/name
///     fsync(parent); remove the old directory
///
/// On failure before the final rename the target is untouched and the temp directory removed.
/// A crash between the two renames leaves the previous checkpoint complete under `.name.old-…`.
public enum AtomicDirectory {
    /// Replaces `directory` by a directory holding exactly `files` (name → bytes). The parent is
    /// created if missing. Failing to remove the set-aside old directory is not an error (the
    /// new content is in place); it stays as a hidden `.name.old-…` sibling.
    public static func write(_ files: [String: [UInt8]], to directory: URL) throws {
        for name in files.keys { try validate(name) }
        let target = directory.standardizedFileURL.path
        let parent = directory.standardizedFileURL.deletingLastPathComponent().path
        let name = directory.standardizedFileURL.lastPathComponent
        try validate(name)

        try makeDirectories(parent)
        var status = stat()
        let targetExists = lstat(target, &status) == 0
        if targetExists, (status.st_mode & S_IFMT) != S_IFDIR {
            throw AtomicDirectoryError.targetNotDirectory(path: target)
        }

        let temporary = parent + "/." + name + ".tmp-" + uniqueSuffix()
        try call("mkdir", temporary) { mkdir(temporary, 0o755) }
        do {
            for fileName in files.keys.sorted() {
                try writeFile(files[fileName]!, to: temporary + "/" + fileName)
            }
            try syncDirectory(temporary)
        } catch {
            removeTree(temporary)
            throw error
        }

        var setAside: String? = nil
        if targetExists {
            let old = parent + "/." + name + ".old-" + uniqueSuffix()
            do {
                try call("rename", target) { rename(target, old) }
            } catch {
                removeTree(temporary)
                throw error
            }
            setAside = old
        }
        do {
            try call("rename", temporary) { rename(temporary, target) }
        } catch {
            if let old = setAside { _ = rename(old, target) }
            removeTree(temporary)
            throw error
        }
        try syncDirectory(parent)
        if let old = setAside { removeTree(old) }
    }

    /// Reads one file of a checkpoint directory whole.
    public static func read(_ name: String, in directory: URL) throws -> [UInt8] {
        try validate(name)
        let path = directory.standardizedFileURL.appendingPathComponent(name).path
        let descriptor: Int32
        do {
            descriptor = try call("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
        } catch AtomicDirectoryError.systemCall(_, _, ENOENT) {
            throw AtomicDirectoryError.missingFile(path: path)
        }
        defer { _ = close(descriptor) }

        var status = stat()
        try call("fstat", path) { fstat(descriptor, &status) }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw AtomicDirectoryError.systemCall(function: "open", path: path, errno: EISDIR)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(status.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buffer in
                try call("read", path) { Glue.read(descriptor, buffer.baseAddress!, buffer.count) }
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    // MARK: Steps

    static func validate(_ name: String) throws {
        if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") {
            throw AtomicDirectoryError.invalidFileName(name)
        }
    }

    static func writeFile(_ bytes: [UInt8], to path: String) throws {
        let descriptor = try call("open", path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        defer { _ = close(descriptor) }
        try bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                written += try call("write", path) {
                    Glue.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
                }
            }
        }
        try call("fsync", path) { fsync(descriptor) }
    }

    /// fsync of a directory makes the names in it (new files, renames) durable.
    static func syncDirectory(_ path: String) throws {
        let descriptor = try call("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { _ = close(descriptor) }
        try call("fsync", path) { fsync(descriptor) }
    }

    /// Best-effort recursive removal for cleanup paths, where the original error matters more.
    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func uniqueSuffix() -> String {
        "\(getpid())-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    /// `mkdir -p`: creates `path` and its missing ancestors.
    static func makeDirectories(_ path: String) throws {
        var status = stat()
        if stat(path, &status) == 0 {
            if (status.st_mode & S_IFMT) != S_IFDIR {
                throw AtomicDirectoryError.systemCall(function: "mkdir", path: path, errno: ENOTDIR)
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        do {
            try call("mkdir", path) { mkdir(path, 0o755) }
        } catch AtomicDirectoryError.systemCall(_, _, EEXIST) {
            // Created meanwhile by someone else: fine.
        }
    }

    /// Runs a C call that reports failure as -1 with errno, retrying EINTR, and throws a typed
    /// error naming the function and path otherwise (swift-nio's `syscall` wrapper in miniature).
    @discardableResult
    static func call<T: FixedWidthInteger>(_ function: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = errno
            if code == EINTR { continue }
            throw AtomicDirectoryError.systemCall(function: function, path: path, errno: code)
        }
    }
}

/// The C functions whose names the Swift methods above shadow.
private enum Glue {
    static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        return Glibc.write(fd, buffer, count)
        #elseif canImport(Musl)
        return Musl.write(fd, buffer, count)
        #else
        return Darwin.write(fd, buffer, count)
        #endif
    }

    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        return Glibc.read(fd, buffer, count)
        #elseif canImport(Musl)
        return Musl.read(fd, buffer, count)
        #else
        return Darwin.read(fd, buffer, count)
        #endif
    }
}
