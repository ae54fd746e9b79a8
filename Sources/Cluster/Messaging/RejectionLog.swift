import Dispatch

/// Counts rejected messages and logs them at a bounded rate, per peer and reason: the first
/// rejection of a peer for a reason in a `window` of seconds is logged in full, the same
/// rejection again only counted and said in one line when the window ends ("rejected 53 more
/// message(s) from peer …: reason, in the last 10 s"). At most `burst` (peer, reason) pairs are
/// logged per window; the others are one count. A peer that floods a long-running server with
/// junk costs it a counter, not a log file.
final class RejectionLog {
    private let log: (String) -> Void
    private let burst: Int
    private let window: Double
    private var windowStart = 0.0
    /// "peer: reason" logged in this window → its repeats since (not logged).
    private var repeats: [String: Int] = [:]
    /// Rejections of peers beyond the first `burst` of this window.
    private var unnamed = 0
    /// Every rejection since start.
    private(set) var total = 0

    /// What is rejected, for the lines: "message", or "connection" (the ZAP handler's cap).
    private let noun: String

    init(burst: Int = 50, window: Double = 10, noun: String = "message", log: @escaping (String) -> Void) {
        self.noun = noun
        self.burst = burst
        self.window = window
        self.log = log
    }

    func reject(from who: String, _ reason: String) {
        total += 1
        let t = monotonicSeconds()
        if t - windowStart >= window { flush(now: t) }
        let key = "\(who): \(reason)"
        if let count = repeats[key] {
            repeats[key] = count + 1
        } else if repeats.count < burst {
            repeats[key] = 0
            log("rejected \(noun) from \(key)")
        } else {
            unnamed += 1
        }
    }

    /// Ends the window: says how many were not logged in it, per peer.
    func flush(now t: Double = monotonicSeconds()) {
        for (key, count) in repeats.sorted(by: { $0.key < $1.key }) where count > 0 {
            log("rejected \(count) more \(noun)(s) from \(key), in the last \(Int(window)) s")
        }
        if unnamed > 0 {
            log("rejected \(unnamed) \(noun)(s) from other peers in the last \(Int(window)) s (\(total) since start)")
        }
        windowStart = t
        repeats = [:]
        unnamed = 0
    }
}
