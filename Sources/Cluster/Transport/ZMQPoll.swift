import CZeroMQ

/// What to wait for on a socket in `ZMQSocket.poll`.
public struct ZMQPollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// A whole message can be received without waiting.
    public static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without waiting.
    public static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

extension ZMQSocket {
    /// Waits until at least one socket is ready or `timeout` passes (zmq_poll), so a caller
    /// serving several sockets blocks on all of them at once instead of sleeping and retrying.
    /// - Returns: per socket, in order, which of `events` it is ready for; all empty if the
    ///   timeout passed (a normal outcome, not an error).
    public static func poll(
        sockets: [ZMQSocket], for events: ZMQPollEvents = .readable, timeout: Duration
    ) throws -> [ZMQPollEvents] {
        var items = try sockets.map { socket in
            zmq_pollitem_t(socket: try socket.liveHandle("zmq_poll"), fd: 0, events: events.rawValue, revents: 0)
        }
        // EINTR restarts the wait with what is left of the timeout, not the whole of it.
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let count = items.count
        try call("zmq_poll") {
            let remaining = max(deadline - clock.now, .zero)
            return zmq_poll(&items, Int32(count), Int(remaining.zmqMilliseconds))
        }
        return items.map { ZMQPollEvents(rawValue: $0.revents & events.rawValue) }
    }

    /// Waits up to `timeout` for a message to arrive. Returns whether one is ready.
    public func waitUntilReadable(timeout: Duration) throws -> Bool {
        try ZMQSocket.poll(sockets: [self], timeout: timeout)[0].contains(.readable)
    }
}
