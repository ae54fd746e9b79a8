import Foundation

/// A long-lived byte buffer that libzmq may send from without copying (`zmq_msg_init_data`),
/// for large payloads sent every step (weights broadcast, gradient pushes) where a fresh
/// allocation per message costs page faults and a copy costs bandwidth.
///
/// Lifetime rule, enforced rather than documented: each `ZMQMessage(sharing:)` retains the
/// buffer and counts one frame in flight until libzmq's free callback runs (after the I/O
/// thread has written the bytes out, or the frame was dropped). Memory is never freed under
/// libzmq. Contents must not change while frames are in flight: before writing again, call
/// `waitUntilReleased(timeout:)` (normally immediate: by the time replies to the last send
/// have arrived, libzmq has long written it).
public final class ZMQSharedBuffer: @unchecked Sendable {
    /// First byte; 64-byte aligned so tensors can be read as Float in place.
    public let base: UnsafeMutableRawPointer
    /// Capacity in bytes.
    public let count: Int
    private let condition = NSCondition()
    private var inFlight = 0  // guarded by condition

    public init(count: Int) {
        precondition(count >= 0)
        self.count = count
        base = .allocate(byteCount: max(count, 1), alignment: 64)
    }

    deinit {
        // Every frame in flight holds a strong reference, so none can be left here.
        base.deallocate()
    }

    /// The buffer for reading.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The buffer for writing; write only while `framesInFlight` is zero.
    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    /// Frames made from this buffer that libzmq has not released yet.
    public var framesInFlight: Int {
        condition.lock()
        defer { condition.unlock() }
        return inFlight
    }

    /// Waits until libzmq has released every frame made from this buffer.
    /// - Returns: false if frames were still in flight after `timeout` (the peer is not
    ///   reading and its queue is full; do not write the buffer).
    public func waitUntilReleased(timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while inFlight > 0 {
            if !condition.wait(until: deadline) { return inFlight == 0 }
        }
        return true
    }

    /// Counts one more frame in flight; returns the retained reference handed to libzmq as
    /// the free callback's hint.
    func retainForFlight() -> UnsafeMutableRawPointer {
        condition.lock()
        inFlight += 1
        condition.unlock()
        return Unmanaged.passRetained(self).toOpaque()
    }

    fileprivate func endFlight() {
        condition.lock()
        inFlight -= 1
        if inFlight == 0 { condition.broadcast() }
        condition.unlock()
    }
}

/// libzmq's free callback for shared frames (runs on an I/O thread, or on the caller's thread
/// when a frame is dropped): ends the flight and drops the reference taken for it.
func releaseSharedBuffer(_ data: UnsafeMutableRawPointer?, _ hint: UnsafeMutableRawPointer?) {
    guard let hint else { return }
    let buffer = Unmanaged<ZMQSharedBuffer>.fromOpaque(hint).takeRetainedValue()
    buffer.endFlight()
}

extension Duration {
    /// The duration in seconds as a Double (for messages and Foundation deadlines).
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }

    /// The duration in whole milliseconds as libzmq options and zmq_poll take them, rounded
    /// up so a short positive timeout never becomes 0 ("don't wait"), capped at Int32.max.
    var zmqMilliseconds: Int32 {
        precondition(self >= .zero, "timeouts are finite and non-negative; nothing waits forever")
        let (whole, attoseconds) = components
        let milliseconds = whole.multipliedReportingOverflow(by: 1000)
        if milliseconds.overflow { return Int32.max }
        let total = milliseconds.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: total)
    }
}
