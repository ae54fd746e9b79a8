/// Text a peer sent that may reach a log line (`Hello.host`, `Error.message`,
/// `Shutdown.reason`): control characters (C0, DEL, C1, line and paragraph separators) and
/// Unicode format characters (bidirectional overrides) become `\u{…}`, and anything past
/// `limit` characters becomes `…`. A peer can then neither forge log lines ("worker 0 …
/// joined") nor send a terminal escape codes. Applied once, where the decoder makes a string.
public enum PeerText {
    public static let limit = 256

    public static func clean(_ text: String, limit: Int = PeerText.limit) -> String {
        var out = String.UnicodeScalarView()
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < limit else {
                out.append("…")
                break
            }
            count += 1
            if isPrintable(scalar) {
                out.append(scalar)
            } else {
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            }
        }
        return String(out)
    }

    private static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return false
        default: return true
        }
    }
}
