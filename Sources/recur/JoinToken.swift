import ArgumentParser
import Cluster
import Foundation

/// The per-job secret that admits workers to a coordinator running without CurveZMQ: 128
/// random bits as 32 hex digits. It reaches workers through the environment
/// (`RECUR_JOIN_TOKEN`) or a private file (`--token-file`, mode 600), never a command line.
enum JoinToken {
    static let environmentVariable = "RECUR_JOIN_TOKEN"

    static func generate() -> String { JoinSecret.make() }

    /// The token given to this process: `--token-file` first, then the environment.
    static func given(file: String?) throws -> String? {
        if let file { return try read(file) }
        if let value = ProcessInfo.processInfo.environment[environmentVariable], !value.isEmpty { return value }
        return nil
    }

    /// The coordinator's token: the one given, else a new one (written to `file` when named).
    static func forCoordinator(file: String?) throws -> (token: String, fresh: Bool) {
        if let file, !FileManager.default.fileExists(atPath: file) {
            let token = generate()
            try KeyFile.write(file, token + "\n", mode: 0o600)
            return (token, true)
        }
        if let token = try given(file: file) { return (token, false) }
        return (generate(), true)
    }

    /// A token file: private to its owner, one line of text.
    static func read(_ path: String) throws -> String {
        let (text, mode) = try KeyFile.readText(path, flag: "--token-file")
        guard mode & 0o077 == 0 else {
            throw ValidationError("token file \(path) may be read by group or others (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty, !token.contains(where: \.isNewline) else { throw ValidationError("token file \(path) holds no token") }
        return token
    }
}
