/// Why a text cannot serve as a training corpus, a classification file or `predict`'s input.
/// Each case prints as one line naming the file.
public enum CorpusError: Error, CustomStringConvertible, Equatable {
    /// A line-based input (`eval --data`, `--val-data`, `predict --data`, standard input) that
    /// cannot be opened or read; `flag` names the option (empty for standard input).
    case unreadableInput(flag: String, path: String, reason: String)
    /// A line-based input that is neither a regular file nor a pipe (a device, a directory, a
    /// socket), refused before reading: /dev/zero would never end.
    case unsupportedInput(flag: String, path: String, kind: String)
    /// The file could not be opened or read; `reason` is the system's (strerror) wording.
    case unreadable(path: String, reason: String)
    /// The file has no bytes.
    case empty(path: String)
    /// Not a regular file (a device such as /dev/zero, a FIFO, a directory): refused before
    /// reading. `kind` names what it is.
    case notRegularFile(path: String, kind: String)
    /// Larger than `Corpus.maximumFileBytes`; refused before reading.
    case tooLarge(path: String, byteCount: Int, limit: Int)
    /// The bytes are not strict UTF-8 (overlong forms, surrogates and values past U+10FFFF are
    /// rejected, nothing is repaired); `offset` is the 0-based offset of the first byte of the
    /// first sequence that does not decode, as Python's `UnicodeDecodeError` reports it.
    case invalidUTF8(path: String, offset: Int, byte: UInt8, reason: String)
    /// The training split cannot fill one window of every stream: it needs N·T + 1 scalars
    /// (the targets are shifted by one).
    case tooShort(name: String, totalCount: Int, trainCount: Int, requiredTrainCount: Int,
                  streams: Int, window: Int, validationFraction: Double)

    /// A line that breaks the line contract (`TextLines`: a lone CR, too long, not UTF-8) or,
    /// in a classification file (`--task classify`), is not `label<TAB>text`; `line` counts
    /// from 1.
    case badExample(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case .badExample(let path, let line, let reason):
            return "\(path):\(line): \(reason)"
        case .unreadableInput(let flag, let path, let reason):
            return "cannot read \(flag.isEmpty ? "" : flag + " ")\(path): \(reason)"
        case .unsupportedInput(let flag, let path, let kind):
            return "\(flag.isEmpty ? "" : flag + " ")\(path) is a \(kind): give a text file or a pipe"
        case .unreadable(let path, let reason):
            return "cannot read corpus \(path): \(reason)"
        case .empty(let path):
            return "corpus \(path) is empty"
        case .notRegularFile(let path, let kind):
            return "corpus \(path) is a \(kind), not a regular file: --data needs a text file"
        case .tooLarge(let path, let byteCount, let limit):
            return "corpus \(path) has \(byteCount) bytes, more than the --data limit of \(limit) bytes (\(limit >> 30) GiB)"
        case .invalidUTF8(let path, let offset, let byte, let reason):
            let hex = String(byte, radix: 16, uppercase: true)
            return "corpus \(path) is not valid UTF-8: byte 0x\(hex.count == 1 ? "0" + hex : hex) at offset \(offset) (\(reason))"
        case .tooShort(let name, let total, let train, let required, let streams, let window, let fraction):
            return "corpus \(name) is too short for \(streams) streams × window \(window): "
                + "its training split has \(train) scalars (of \(total), validation fraction \(fraction)), "
                + "at least \(required) are needed (streams × window + 1); "
                + "use a longer text, fewer streams or a shorter window"
        }
    }
}
