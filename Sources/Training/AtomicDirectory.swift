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
    /// The file is a FIFO, device, socket or directory; refused before reading.
    case notRegularFile(path: String, kind: String)
    /// The file is larger than the reader's limit; refused before reading.
    case fileTooLarge(path: String, byteCount: Int, limit: Int)

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
        case let .notRegularFile(path, kind):
            return "\(path) is a \(kind), not a regular file (a checkpoint holds only regular files)"
        case let .fileTooLarge(path, count, limit):
            return "\(path) has \(count) bytes, more than the limit of \(limit) bytes for this checkpoint file"
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
/// A crash between the two renames leaves the previous checkpoint complete under `.name.old-…`
/// and the new one under `.name.tmp-…`; `recover` puts the newest complete one back.
public enum AtomicDirectory {
    /// Replaces `directory` by a directory holding exactly `files` (name → bytes). The parent is
    /// created if missing. `verify`, when given, is called with the fully written temporary
    /// directory before it replaces the old one; if it throws, the old directory stays and the
    /// error is rethrown. Failing to remove the set-aside old directory is not an error (the
    /// new content is in place); it stays as a hidden `.name.old-…` sibling.
    public static func write(_ files: [String: [UInt8]], to directory: URL,
                             verify: ((URL) throws -> Void)? = nil) throws {
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
            try verify?(URL(fileURLWithPath: temporary, isDirectory: true))
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

    /// Reads one regular file of a checkpoint directory whole, refusing before any read or
    /// allocation a FIFO or device (opened non-blocking, so a FIFO cannot hang the reader) and
    /// a file larger than `maximumBytes`.
    public static func read(_ name: String, in directory: URL, maximumBytes: Int = Int.max) throws -> [UInt8] {
        try validate(name)
        let path = directory.standardizedFileURL.appendingPathComponent(name).path
        let descriptor: Int32
        do {
            descriptor = try call("open", path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        } catch AtomicDirectoryError.systemCall(_, _, ENOENT) {
            throw AtomicDirectoryError.missingFile(path: path)
        }
        defer { _ = close(descriptor) }

        var status = stat()
        try call("fstat", path) { fstat(descriptor, &status) }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw AtomicDirectoryError.notRegularFile(path: path, kind: FileBytes.fileKind(status.st_mode))
        }
        let size = max(Int(status.st_size), 0)
        guard size <= maximumBytes else {
            throw AtomicDirectoryError.fileTooLarge(path: path, byteCount: size, limit: maximumBytes)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: min(1 << 20, max(size, 4096)))
        while true {
            let n = try chunk.withUnsafeMutableBytes { buffer in
                try call("read", path) { Glue.read(descriptor, buffer.baseAddress!, buffer.count) }
            }
            if n == 0 { break }
            guard bytes.count + n <= maximumBytes else {   // grew while we read
                throw AtomicDirectoryError.fileTooLarge(path: path, byteCount: bytes.count + n, limit: maximumBytes)
            }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    // MARK: Recovery

    /// One hidden sibling a writer leaves while it works: `.NAME.tmp-PID-HEX` (being written)
    /// or `.NAME.old-PID-HEX` (the previous directory, set aside).
    struct Leftover {
        let path: String
        let pid: pid_t
        let isTemporary: Bool
        let modified: timespec
    }

    /// Repairs what a killed writer left beside `directory` and returns one line per action:
    ///
    /// - `directory` missing (the writer died between its two renames): the newest leftover
    ///   for which `isComplete` holds is renamed back to `directory` (newest by modification
    ///   time; the `.tmp-` copy, which was about to replace the `.old-` one, wins a tie);
    /// - every other leftover whose writer (the PID in its name) is no longer running is
    ///   removed. Leftovers of live processes, this one included, are never touched.
    ///
    /// PIDs are only meaningful on this machine: do not share a checkpoint parent directory
    /// between writers on different hosts. Removal is best effort (a failure is reported in
    /// the returned lines, not thrown); a failed rename throws.
    public static func recover(_ directory: URL, isComplete: (URL) -> Bool,
                               isRunning: (pid_t) -> Bool = isProcessRunning) throws -> [String] {
        let target = directory.standardizedFileURL.path
        let parent = directory.standardizedFileURL.deletingLastPathComponent().path
        let name = directory.standardizedFileURL.lastPathComponent
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return [] }
        var leftovers: [Leftover] = []
        for entry in entries {
            guard let (pid, isTemporary) = parseLeftover(entry, name: name), !isRunning(pid) else { continue }
            var status = stat()
            let path = parent + "/" + entry
            guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { continue }
            leftovers.append(Leftover(path: path, pid: pid, isTemporary: isTemporary, modified: status.st_mtim))
        }
        guard !leftovers.isEmpty else { return [] }
        var lines: [String] = []
        var status = stat()
        if lstat(target, &status) != 0, errno == ENOENT {
            let newestFirst = leftovers.sorted { a, b in
                (a.modified.tv_sec, a.modified.tv_nsec, a.isTemporary ? 1 : 0) > (b.modified.tv_sec, b.modified.tv_nsec, b.isTemporary ? 1 : 0)
            }
            if let restored = newestFirst.first(where: { isComplete(URL(fileURLWithPath: $0.path, isDirectory: true)) }) {
                try call("rename", restored.path) { rename(restored.path, target) }
                try syncDirectory(parent)
                lines.append("restored \(target) from \(restored.path), left complete by process \(restored.pid), which is no longer running")
                leftovers.removeAll { $0.path == restored.path }
            }
        }
        for leftover in leftovers.sorted(by: { $0.path < $1.path }) {
            do {
                try FileManager.default.removeItem(atPath: leftover.path)
                lines.append("removed \(leftover.path), left by process \(leftover.pid), which is no longer running")
            } catch {
                lines.append("could not remove \(leftover.path) (left by process \(leftover.pid)): \(error.localizedDescription)")
            }
        }
        return lines
    }

    /// (pid, is a .tmp-) for `.NAME.tmp-PID-HEX` / `.NAME.old-PID-HEX`, nil for anything else.
    static func parseLeftover(_ entry: String, name: String) -> (pid_t, Bool)? {
        for (infix, isTemporary) in [(".tmp-", true), (".old-", false)] {
            let prefix = "." + name + infix
            guard entry.hasPrefix(prefix) else { continue }
            let rest = entry.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard rest.count == 2, let pid = pid_t(rest[0]), pid > 0, !rest[1].isEmpty,
                  rest[1].allSatisfy(\.isHexDigit) else { return nil }
            return (pid, isTemporary)
        }
        return nil
    }

    /// kill(pid, 0): the process exists (EPERM: it exists but belongs to someone else).
    public static func isProcessRunning(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
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
