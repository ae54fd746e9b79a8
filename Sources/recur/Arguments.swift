import Foundation

/// The command line before swift-argument-parser reads it. Three rewrites, all here:
///
/// - a negative number after an option is its value: `--lr -1` → `--lr=-1` (the parser would
///   take `-1` for a short flag and say the value is missing; the command then says why -1 is
///   not allowed);
/// - `--resume DIR` and `--resume=DIR` are `--resume --checkpoint DIR` (a bare `--resume`
///   continues `--checkpoint`);
/// - old spellings are hidden aliases of the one name per concept (`aliases`).
enum Arguments {
    /// old spelling → the name every command uses
    static let aliases = ["--checkpoint-dir": "--checkpoint", "--length": "--sample-length"]

    static func normalize(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            var argument = arguments[i]
            if argument == "--" {   // everything after it is positional
                out += arguments[i...]
                break
            }
            if let alias = aliases.first(where: { argument == $0.key || argument.hasPrefix($0.key + "=") }) {
                argument = alias.value + argument.dropFirst(alias.key.count)
            }
            let next = i + 1 < arguments.count ? arguments[i + 1] : nil
            if argument.hasPrefix("--"), !argument.contains("="), let next, isNegativeNumber(next) {
                out.append(argument + "=" + next)
                i += 2
                continue
            }
            if argument.hasPrefix("--resume=") {   // the spelling --help suggests for --resume [DIR]
                out += ["--resume", "--checkpoint", String(argument.dropFirst("--resume=".count))]
                i += 1
                continue
            }
            if argument == "--resume", let next, !next.hasPrefix("-") {
                out += ["--resume", "--checkpoint", next]
                i += 2
                continue
            }
            out.append(argument)
            i += 1
        }
        return out
    }

    /// `-1`, `-0.5`, `-.5`, `-1e-3`, `-inf`: a value, never a flag (no flag starts with a digit).
    static func isNegativeNumber(_ text: String) -> Bool {
        guard text.count > 1, text.hasPrefix("-") else { return false }
        return Double(text) != nil
    }
}

/// The command that continues an interrupted run: this process's own command line with
/// `--resume DIR` in place of what only a new run takes (`--force`, `--init-from`), every other
/// flag as given, each word quoted for a POSIX shell where it needs it.
enum ResumeCommand {
    static func line(arguments: [String], checkpoint: String) -> String {
        guard arguments.count >= 2 else { return "recur train --resume \(quoted(checkpoint))" }
        var kept: [String] = []
        var i = 2
        while i < arguments.count {
            let argument = arguments[i]
            let takesValue = ["--init-from", "--checkpoint", "--checkpoint-dir"].contains(argument)
            if argument == "--force" || argument.hasPrefix("--init-from=") || argument.hasPrefix("--checkpoint=")
                || argument.hasPrefix("--checkpoint-dir=") || argument.hasPrefix("--resume=") {
                i += 1
            } else if takesValue {
                i += 2
            } else if argument == "--resume" {
                i += (i + 1 < arguments.count && !arguments[i + 1].hasPrefix("-")) ? 2 : 1
            } else {
                kept.append(argument)
                i += 1
            }
        }
        return ([arguments[0], arguments[1], "--resume", checkpoint] + kept).map(quoted).joined(separator: " ")
    }

    /// `word`, or `'word'` when a shell would split or expand it.
    static func quoted(_ word: String) -> String {
        let plain = word.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_./=:@,+%".unicodeScalars.contains($0) }
        return plain && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
