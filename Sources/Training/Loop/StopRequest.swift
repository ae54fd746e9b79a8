import Foundation

/// A flag another thread (signal handler, launcher) raises to stop a run at the next step
/// boundary; the loop then checkpoints the last completed step and throws `StopRequest.Stopped`.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    private var code: Int32 = 1

    /// Why the run stopped and the exit code the process should end with (130/143 after a signal).
    public struct Stopped: Error, CustomStringConvertible, Equatable {
        public var reason: String
        public var exitCode: Int32
        public var description: String { reason }
        public init(reason: String, exitCode: Int32 = 1) {
            self.reason = reason
            self.exitCode = exitCode
        }
    }

    public init() {}

    /// The first request wins.
    public func request(_ reason: String, exitCode: Int32 = 1) {
        lock.lock()
        if self.reason == nil {
            self.reason = reason
            code = exitCode
        }
        lock.unlock()
    }

    public var pending: Stopped? {
        lock.lock()
        defer { lock.unlock() }
        return reason.map { Stopped(reason: $0, exitCode: code) }
    }

    /// Throws `Stopped` when a stop was requested.
    public func check() throws {
        if let stopped = pending { throw stopped }
    }
}
