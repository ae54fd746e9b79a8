import Foundation

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
