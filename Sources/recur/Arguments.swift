/// The command line before swift-argument-parser reads it. Three rewrites, all here:
///
/// - a negative number after an option is its value: `--lr -1` → `--lr=-1` (the parser would
///   take `-1` for a short flag and say the value is missing; the command then says why -1 is
///   not allowed);
/// - `--resume DIR` is `--resume --checkpoint DIR` (a bare `--resume` continues `--checkpoint`);
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
