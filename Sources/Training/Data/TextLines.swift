#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The line contract of every line-based input: classification files (training `--data`,
/// `--val-data`, `eval --data`) and `predict`'s inputs (docs/DESIGN.md, "Lines").
///
/// - A line ends at LF or at the end of the input; a CR right before that end belongs to the
///   line end (CR LF files read as LF files). Any other CR is an error naming the line: a file
///   of classic-Mac CR endings would otherwise read as one long line, silently.
/// - A byte order mark at the start of the input is dropped; U+FEFF elsewhere is text.
/// - A line's text (its end excluded) is at most `maximumLineBytes` of UTF-8.
///
/// A line that breaks several rules is reported for the first of: too long, lone CR, not UTF-8.
/// - Lines are strict UTF-8 (`StrictUTF8`); NUL and other control characters are text.
public enum TextLines {
    /// The UTF-8 encoding of U+FEFF, which at the start of a file marks it as UTF-8.
    public static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
    /// The longest line text, 4 MiB: what a streaming reader holds at most for one line.
    public static let maximumLineBytes = 1 << 22

    /// Where the text of the line `start ..< end` ends (`end` is its LF or the end of the
    /// input), and the position of a CR that is not part of the line end, if any.
    /// `isCarriageReturn(i)` tells whether unit i is a CR: bytes and token ids share this rule.
    @inline(__always)
    static func textEnd(start: Int, end: Int, isCarriageReturn: (Int) -> Bool) -> (end: Int, loneCarriageReturn: Int?) {
        let textEnd = end > start && isCarriageReturn(end - 1) ? end - 1 : end
        var i = start
        while i < textEnd {
            if isCarriageReturn(i) { return (textEnd, i) }
            i += 1
        }
        return (textEnd, nil)
    }

    public static let loneCarriageReturn = "carriage return (CR) not followed by a line feed: lines end in LF or CR LF"

    public static func tooLong(limit: Int) -> String {
        "line longer than \(limit) bytes (\(limit >> 20) MiB), the limit of one line"
    }
}

/// Reads lines one at a time from a file, a pipe, standard input or memory, holding at most
/// one line and one read's worth of bytes, whatever the input's size (`recur predict` on a
/// 1.5 GB stream). Lines follow `TextLines`; every failure is a `CorpusError` naming the input
/// and, for a line, its number (from 1).
public final class LineReader {
    /// The input's name in messages: its path, or "standard input".
    public let name: String
    /// The number of the last line returned (0 before the first).
    public private(set) var lineNumber = 0

    private var source: Source
    /// The option that named the input ("--data"), empty for standard input and memory.
    private let flag: String
    private let readBytes: Int
    private let maximumLineBytes: Int
    private let maximumTotalBytes: Int
    /// Bytes read and not yet returned start at `head`; LF was searched for up to `scanned`.
    private var buffer: [UInt8] = []
    private var head = 0, scanned = 0
    /// Offset in the input of `buffer[0]`, for the offsets of UTF-8 errors.
    private var bufferOffset = 0
    private var atEnd = false

    private enum Source {
        case descriptor(Int32, owned: Bool)
        case memory([UInt8], position: Int)
    }

    /// Opens `path` for reading: a regular file or a pipe (FIFO). Devices (/dev/zero never
    /// ends), directories and sockets are refused before anything is read. `flag` names the
    /// option in errors ("--data"); `maximumTotalBytes` bounds the whole input (a regular file's
    /// size is checked before reading).
    public convenience init(path: String, flag: String, maximumTotalBytes: Int = .max) throws {
        func unreadable() -> CorpusError { .unreadableInput(flag: flag, path: path, reason: String(cString: strerror(errno))) }
        // A FIFO is opened blocking, as `cat` opens it: until a writer comes (a FIFO opened
        // without blocking reads as ended while it has no writer, and one opened and closed
        // to look at it loses what a writer already put in). Anything else is opened with
        // O_NONBLOCK and its kind checked on the descriptor before anything can block.
        var pathInfo = stat()
        let isFIFO = stat(path, &pathInfo) == 0 && pathInfo.st_mode & S_IFMT == S_IFIFO
        let fd = Self.retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC | (isFIFO ? 0 : O_NONBLOCK)) }
        guard fd >= 0 else { throw unreadable() }
        var info = stat()
        guard fstat(fd, &info) == 0, fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0 else {
            let error = unreadable()
            close(fd)
            throw error
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFIFO else {
            close(fd)
            throw CorpusError.unsupportedInput(flag: flag, path: path, kind: FileBytes.fileKind(info.st_mode))
        }
        if kind == S_IFREG, Int(info.st_size) > maximumTotalBytes {
            close(fd)
            throw CorpusError.tooLarge(path: path, byteCount: Int(info.st_size), limit: maximumTotalBytes)
        }
        self.init(source: .descriptor(fd, owned: true), name: path, flag: flag, maximumTotalBytes: maximumTotalBytes)
    }

    /// Lines of standard input (not closed afterwards).
    public static func standardInput() -> LineReader {
        LineReader(source: .descriptor(0, owned: false), name: "standard input")
    }

    /// Lines of `bytes`, as the same bytes read from a file would give; `readBytes` and
    /// `maximumLineBytes` smaller than the defaults let tests and fuzzing reach every boundary.
    public convenience init(bytes: [UInt8], name: String, readBytes: Int = 1 << 16,
                            maximumLineBytes: Int = TextLines.maximumLineBytes, maximumTotalBytes: Int = .max) {
        self.init(source: .memory(bytes, position: 0), name: name, readBytes: readBytes,
                  maximumLineBytes: maximumLineBytes, maximumTotalBytes: maximumTotalBytes)
    }

    private init(source: Source, name: String, flag: String = "", readBytes: Int = 1 << 16,
                 maximumLineBytes: Int = TextLines.maximumLineBytes, maximumTotalBytes: Int = .max) {
        precondition(readBytes > 0 && maximumLineBytes > 0)
        self.source = source
        self.name = name
        self.flag = flag
        self.readBytes = readBytes
        self.maximumLineBytes = maximumLineBytes
        self.maximumTotalBytes = maximumTotalBytes
    }

    deinit {
        if case .descriptor(let fd, owned: true) = source { close(fd) }
    }

    /// The text of the next line, nil after the last. A final line without LF counts; an
    /// input that ends with LF has no empty line after it.
    public func next() throws -> String? {
        while true {
            if let lf = buffer[scanned...].firstIndex(of: 0x0A) {
                let line = head..<lf
                head = lf + 1
                scanned = head
                return try text(of: line)
            }
            scanned = buffer.count
            // One byte more than the limit is a CR of a CR LF end; the first line may also
            // carry a byte order mark.
            let allowance = maximumLineBytes + 1 + (lineNumber == 0 ? TextLines.byteOrderMark.count : 0)
            if buffer.count - head > allowance {
                throw CorpusError.badExample(path: name, line: lineNumber + 1, reason: TextLines.tooLong(limit: maximumLineBytes))
            }
            if atEnd {
                guard head < buffer.count else { return nil }
                let line = head..<buffer.count
                head = buffer.count
                return try text(of: line)
            }
            if head > 0 {
                buffer.removeSubrange(..<head)
                bufferOffset += head
                scanned -= head
                head = 0
            }
            try fill()
        }
    }

    /// Appends up to `readBytes` bytes of the source to `buffer`; sets `atEnd` at its end.
    private func fill() throws {
        let old = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: readBytes))
        var got = 0
        switch source {
        case .descriptor(let fd, _):
            got = buffer.withUnsafeMutableBytes { raw in
                Self.retryingInterrupts { read(fd, raw.baseAddress! + old, readBytes) }
            }
            guard got >= 0 else {
                let reason = String(cString: strerror(errno))
                buffer.removeLast(readBytes)
                throw CorpusError.unreadableInput(flag: flag, path: name, reason: reason)
            }
        case .memory(let bytes, let position):
            got = min(readBytes, bytes.count - position)
            buffer.replaceSubrange(old..<old + got, with: bytes[position..<position + got])
            source = .memory(bytes, position: position + got)
        }
        buffer.removeLast(readBytes - got)
        if got == 0 { atEnd = true }
        if bufferOffset + buffer.count > maximumTotalBytes {
            throw CorpusError.tooLarge(path: name, byteCount: bufferOffset + buffer.count, limit: maximumTotalBytes)
        }
    }

    /// The text of `buffer[line]` (its LF excluded) under the line contract.
    private func text(of line: Range<Int>) throws -> String {
        lineNumber += 1
        var start = line.lowerBound
        if lineNumber == 1, buffer[line].starts(with: TextLines.byteOrderMark) { start += TextLines.byteOrderMark.count }
        let (end, lone) = buffer.withUnsafeBufferPointer { b in
            TextLines.textEnd(start: start, end: line.upperBound) { b[$0] == 0x0D }
        }
        // Length first: a long line is refused as such whether or not it was read whole.
        guard end - start <= maximumLineBytes else {
            throw CorpusError.badExample(path: name, line: lineNumber, reason: TextLines.tooLong(limit: maximumLineBytes))
        }
        if lone != nil { throw CorpusError.badExample(path: name, line: lineNumber, reason: TextLines.loneCarriageReturn) }
        if let text = String(validating: buffer[start..<end], as: UTF8.self) { return text }
        let failure = buffer.withUnsafeBufferPointer { b -> StrictUTF8.Failure? in
            let scratch = UnsafeMutableBufferPointer<Int32>.allocate(capacity: end - start)
            defer { scratch.deallocate() }
            do throws(StrictUTF8.Failure) {
                // Decoding stops at the line's end: a sequence the LF cuts is invalid there.
                _ = try StrictUTF8.decode(UnsafeBufferPointer(rebasing: b[..<end]), range: start..<end, into: scratch)
                return nil
            } catch {
                return error
            }
        }
        var f = failure ?? StrictUTF8.Failure(offset: start, byte: buffer[start], reason: "invalid UTF-8")
        let endsInput = atEnd && end == buffer.count
        if !endsInput && f.reason == "sequence cut off by the end of the file" { f.reason = "sequence cut off by the end of the line" }
        let hex = String(f.byte, radix: 16, uppercase: true)
        throw CorpusError.badExample(path: name, line: lineNumber,
                                     reason: "not valid UTF-8: byte 0x\(hex.count == 1 ? "0" + hex : hex) at offset \(bufferOffset + f.offset) (\(f.reason))")
    }

    /// Repeats a call that fails with EINTR (a signal arrived before any data moved).
    private static func retryingInterrupts<R: BinaryInteger>(_ call: () -> R) -> R {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }
}
