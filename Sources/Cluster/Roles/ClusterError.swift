import Foundation

/// Failures of a distributed run that end it; each is one line naming who and when.
public enum ClusterError: Error, CustomStringConvertible, Equatable {
    case workerFailed(String)
    case coordinatorLost(endpoint: String, seconds: Double, encrypted: Bool = false)
    /// Nothing ever came back from the coordinator (before the welcome).
    case coordinatorUnreachable(endpoint: String, seconds: Double, encrypted: Bool = false)
    case refused(String)
    case joinTimeout(joined: Int, expected: Int, seconds: Double)
    /// A stop request (signal, failed local worker): the process exits with `exitCode`.
    case stopped(String, exitCode: Int32 = 1)
    case invalidOptions(String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .workerFailed(let m): return m
        case .coordinatorLost(let endpoint, let seconds, let encrypted):
            let hint = encrypted ? "; with CurveZMQ, check --server-key and that this worker's public key is in the coordinator's --authorized-keys" : ""
            return "coordinator \(endpoint) stopped answering (no message for \(Self.format(seconds)) s\(hint))"
        case .coordinatorUnreachable(let endpoint, let seconds, let encrypted):
            let hint = encrypted ? "; with CurveZMQ, check --server-key and that this worker's public key is in the coordinator's --authorized-keys" : ""
            return "no answer from a coordinator at \(endpoint) within \(Self.format(seconds)) s: is `recur serve` running there and reachable\(hint)?"
        case .refused(let m): return "the coordinator refused this worker: \(m)"
        case .joinTimeout(let joined, let expected, let seconds):
            return "only \(joined) of \(expected) workers joined within \(Self.format(seconds)) s"
        case .stopped(let m, _): return m
        case .invalidOptions(let m): return m
        case .protocolViolation(let m): return m
        }
    }

    static func format(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s) }
}

/// Monotonic seconds.
@inline(__always)
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// A flag another thread (signal handler, launcher) can raise to stop the run between steps.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    private var code: Int32 = 1

    public init() {}

    public func request(_ reason: String, exitCode: Int32 = 1) {
        lock.lock()
        if self.reason == nil {
            self.reason = reason
            code = exitCode
        }
        lock.unlock()
    }

    public var pending: (reason: String, exitCode: Int32)? {
        lock.lock()
        defer { lock.unlock() }
        return reason.map { ($0, code) }
    }

    /// Throws `ClusterError.stopped` when a stop was requested.
    func check() throws {
        if let (reason, code) = pending { throw ClusterError.stopped(reason, exitCode: code) }
    }
}

/// Runs `work` on its own thread and calls `service` about every `interval` seconds on
/// the calling thread until it finishes: a role keeps answering its socket (heartbeats)
/// while a long computation, evaluation or checkpoint runs.
func runServicing<T>(interval: Double, _ work: @escaping () throws -> T, service: () throws -> Void) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        box.result = Result { try work() }
        done.signal()
    }
    thread.stackSize = 8 << 20
    thread.start()
    while done.wait(timeout: .now() + interval) == .timedOut {
        try service()
    }
    return try box.result!.get()
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
