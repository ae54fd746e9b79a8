import Foundation

/// Runs a `ComputeJob` on its own thread (8 MiB of stack, as the engine's recursion wants);
/// the calling thread meanwhile calls `service` about every `interval` seconds (heartbeats,
/// the parent check) and `early` the moment the engine hands the early part over.
func runCompute(_ job: ComputeJob, interval: Double, service: () throws -> Void,
                early: (Range<Int>) throws -> Void) throws {
    let events = DispatchSemaphore(value: 0)
    let box = ComputeBox()
    let thread = Thread {
        job.run { slices in
            box.post(early: slices)
            events.signal()
        }
        box.finish()
        events.signal()
    }
    thread.stackSize = 8 << 20
    thread.start()
    while true {
        if events.wait(timeout: .now() + interval) == .timedOut {
            try service()
            continue
        }
        if let slices = box.takeEarly() { try early(slices) }
        if box.isFinished { return }
    }
}

/// Hands results from the compute thread to the driver's thread.
private final class ComputeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var early: Range<Int>?
    private var finished = false

    func post(early slices: Range<Int>) { lock.lock(); early = slices; lock.unlock() }
    func finish() { lock.lock(); finished = true; lock.unlock() }

    func takeEarly() -> Range<Int>? {
        lock.lock()
        defer { lock.unlock() }
        let slices = early
        early = nil
        return slices
    }

    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }
}
