import Dispatch

/// Counts rejected messages and logs them at a bounded rate: the first `burst` of every
/// `window` seconds in full, then one line saying how many more were dropped. A peer that
/// floods a long-running server with junk costs it a counter, not a log file.
final class RejectionLog {
    private let log: (String) -> Void
    private let burst: Int
    private let window: Double
    private var windowStart = 0.0
    private var loggedInWindow = 0
    private var suppressedInWindow = 0
    /// Every rejection since start.
    private(set) var total = 0

    init(burst: Int = 50, window: Double = 10, log: @escaping (String) -> Void) {
        self.burst = burst
        self.window = window
        self.log = log
    }

    func reject(from who: String, _ reason: String) {
        total += 1
        let t = monotonicSeconds()
        if t - windowStart >= window { flush(now: t) }
        if loggedInWindow < burst {
            loggedInWindow += 1
            log("rejected message from \(who): \(reason)")
        } else {
            suppressedInWindow += 1
        }
    }

    /// Ends the window: says how many were not logged in it.
    func flush(now t: Double = monotonicSeconds()) {
        if suppressedInWindow > 0 {
            log("rejected \(suppressedInWindow) more message(s) in the last \(Int(window)) s (\(total) since start)")
        }
        windowStart = t
        loggedInWindow = 0
        suppressedInWindow = 0
    }
}

/// Monotonic seconds.
@inline(__always)
func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
