import ArgumentParser
import Cluster
import Foundation

/// Key files: `public-key = Z85` / `secret-key = Z85` lines, `#` comments.
enum KeyFile {
    struct Keys { var publicKey: String?; var secretKey: String? }

    /// Parses a key file. A file holding a secret key must be private to its owner (no group
    /// or other permission bits, as ssh demands of private keys): refused otherwise, with the
    /// chmod to run.
    static func read(_ path: String, flag: String = "key file") throws -> Keys {
        let (text, mode) = try readText(path, flag: flag)
        var keys = Keys()
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].hasPrefix("#") else { continue }
            do {
                try CurveKeys.validate(parts[1])
            } catch {
                throw ValidationError("\(path): \(parts[0]): \(error)")
            }
            if parts[0] == "public-key" { keys.publicKey = parts[1] }
            if parts[0] == "secret-key" { keys.secretKey = parts[1] }
        }
        guard keys.publicKey != nil || keys.secretKey != nil else { throw ValidationError("\(path) holds no key") }
        if keys.secretKey != nil, mode & 0o077 != 0 {
            throw ValidationError("key file \(path) holds a secret key but group or others may access it (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        return keys
    }

    /// The file's text and permission bits, both from one open descriptor.
    static func readText(_ path: String, flag: String = "key file") throws -> (String, mode_t) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ValidationError("cannot read \(flag) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size <= 1 << 16 else {
            throw ValidationError("cannot read \(flag) \(path): not a regular file of at most 64 KiB")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            filled += n
        }
        guard let text = String(validating: bytes[..<filled], as: UTF8.self) else {
            throw ValidationError("cannot read \(flag) \(path): not UTF-8 text")
        }
        return (text, status.st_mode)
    }

    /// This process's own pair from a `recur keygen` .key file (the public key derived from
    /// the secret when the file omits it).
    static func keyPair(_ path: String) throws -> (publicKey: String, secretKey: String) {
        let keys = try read(path, flag: "--key")
        guard let secret = keys.secretKey else { throw ValidationError("--key \(path) holds no secret-key") }
        return (try keys.publicKey ?? CurveKeys.publicKey(fromSecret: secret), secret)
    }

    /// Allow-list: `public-key = KEY` lines (as `recur keygen` writes them) or bare 40-char
    /// Z85 keys, one per line; `#` starts a comment line. Z85 itself uses `=` and `#`, so a
    /// line is a bare key when it is exactly one 40-character word.
    static func publicKeys(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read --authorized-keys \(path)")
        }
        var keys: [String] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let key: String
            if line.count == 40, !line.contains(" ") {
                key = line
            } else if line.hasPrefix("public-key") {
                key = line.split(separator: "=", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces)
            } else {
                continue   // blank, comment, or another field (secret-key is never an allow-list entry)
            }
            do { try CurveKeys.validate(key) } catch { throw ValidationError("\(path): \(error)") }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw ValidationError("\(path) lists no public key") }
        return keys
    }

    static func write(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, mode)
        let bytes = Array(text.utf8)
        guard systemWrite(fd, bytes, bytes.count) == bytes.count else { throw ValidationError("cannot write \(path)") }
    }
}

/// read(2) under a name the local variables do not shadow.
private func systemRead(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, bytes, count) }

/// write(2) under a name `KeyFile.write` does not shadow.
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }

extension String {
    /// The rest after `prefix`, nil when the string does not start with it.
    func dropPrefix(_ prefix: String) -> String? { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil }
}
