import Foundation

/// Failures of a distributed run that end it; each is one line naming who and when.
public enum ClusterError: Error, CustomStringConvertible, Equatable {
    case workerFailed(String)
    case coordinatorLost(endpoint: String, seconds: Double, encrypted: Bool = false)
    /// Nothing ever came back from the coordinator (before the welcome).
    case coordinatorUnreachable(endpoint: String, seconds: Double, encrypted: Bool = false)
    case refused(String)
    /// A local worker's coordinator process is gone.
    case coordinatorExited(pid: Int)
    case joinTimeout(joined: Int, expected: Int, seconds: Double)
    /// More workers than gradient chunks: some would get no work.
    case tooFewChunks(workers: Int, chunks: Int)
    case protocolViolation(String)
    /// A parameter shard that closed, stopped answering or failed; the run cannot go on.
    case shardLost(String)
    /// A local worker process could not be started.
    case launchFailed(String)

    public var description: String {
        switch self {
        case .workerFailed(let m): return m
        case .coordinatorLost(let endpoint, let seconds, let encrypted):
            return "coordinator \(endpoint) stopped answering (no message for \(Self.format(seconds)) s\(Self.curveHint(encrypted)))"
        case .coordinatorUnreachable(let endpoint, let seconds, let encrypted):
            return "no answer from a coordinator at \(endpoint) within \(Self.format(seconds)) s: is `recur serve` running there and reachable\(Self.curveHint(encrypted))?"
        case .refused(let m): return "the coordinator refused this worker: \(m)"
        case .coordinatorExited(let pid): return "the coordinator process \(pid) is gone"
        case .joinTimeout(let joined, let expected, let seconds):
            return "only \(joined) of \(expected) workers joined within \(Self.format(seconds)) s"
        case .tooFewChunks(let workers, let chunks):
            return "\(workers) workers need at least as many gradient chunks, and the batch has \(chunks)"
        case .protocolViolation(let m): return m
        case .shardLost(let m): return m
        case .launchFailed(let m): return m
        }
    }

    private static func curveHint(_ encrypted: Bool) -> String {
        encrypted ? "; with CurveZMQ, check the coordinator's public key and that this worker's public key is on its allow-list" : ""
    }

    static func format(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s) }
}
