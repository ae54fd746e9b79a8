import Foundation

/// One line of a launcher hostfile, or of `--join JOB --host LINE`:
/// `host [workers=N] [threads=K] [address=ADDR]`, `#` starts a comment.
/// `target` is what ssh connects to (`user@host` works); `address` is what workers dial.
public struct HostLine: Equatable, Sendable {
    public var target: String
    public var address: String
    public var workers: Int
    public var threads: Int?
    /// The hostfile line number (0 for a `--host` line or a coordinator-only host).
    public var line: Int

    public init(target: String, address: String? = nil, workers: Int = 1, threads: Int? = nil, line: Int = 0) {
        self.target = target
        self.address = address ?? HostLine.hostPart(target)
        self.workers = workers
        self.threads = threads
        self.line = line
    }

    /// `user@host` → `host`.
    static func hostPart(_ target: String) -> String {
        guard let at = target.lastIndex(of: "@") else { return target }
        return String(target[target.index(after: at)...])
    }

    /// `[user@]host`, no leading `-` (ssh would take it for an option).
    public static func isValidTarget(_ text: String) -> Bool {
        !text.hasPrefix("-") && text.range(of: #"^([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+$"#, options: .regularExpression) != nil
    }

    /// A bad line, with the message the launcher prints after its program name:
    /// `hosts:4: unknown field 'cpus=2' (expected …)`.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Parses `text`; `nil` for a blank or comment-only line. `place` names the line in
    /// errors (`FILE:N` or `--host`); `existing` are the hosts already listed (a host appears once).
    public static func parse(_ text: String, place: String, line: Int, existing: [HostLine]) throws -> HostLine? {
        let content = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
        guard let target = fields.first else { return nil }
        func fail(_ message: String) -> ParseError { ParseError(description: "\(place): \(message)") }
        guard isValidTarget(target) else { throw fail("'\(target)' is not a host name ([user@]host)") }
        var host = HostLine(target: target, line: line)
        for field in fields.dropFirst() {
            if let value = field.valueAfter("workers=") {
                guard let n = wholeNumber(value) else { throw fail("workers must be a whole number, got '\(value)'") }
                host.workers = n
            } else if let value = field.valueAfter("threads=") {
                guard let n = wholeNumber(value), n > 0 else { throw fail("threads must be a positive whole number, got '\(value)'") }
                host.threads = n
            } else if let value = field.valueAfter("address=") {
                guard isValidTarget(value), !value.contains("@") else { throw fail("'\(value)' is not an address") }
                host.address = value
            } else {
                throw fail("unknown field '\(field)' (expected workers=N, threads=K or address=ADDR)")
            }
        }
        if let other = existing.first(where: { $0.target == target }) {
            throw fail("host '\(target)' is already listed on line \(other.line) (use workers=N)")
        }
        return host
    }

    /// Every host of a hostfile's text, in order; `name` is the file's name in errors.
    public static func parseFile(_ text: String, name: String) throws -> [HostLine] {
        var hosts: [HostLine] = []
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            if let host = try parse(line, place: "\(name):\(index + 1)", line: index + 1, existing: hosts) {
                hosts.append(host)
            }
        }
        return hosts
    }
}

/// `^[0-9]+$` as a number (the shell's is_count); nil for anything else or an overflow.
func wholeNumber(_ text: String) -> Int? {
    guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return Int(text)
}

extension String {
    /// `"workers=2".valueAfter("workers=")` → `"2"`.
    func valueAfter(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}
