import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sending and receiving frames. A message is one or more frames delivered all together or
/// not at all; a ROUTER's messages start with the peer's identity frame.
extension ZMQSocket {
    // MARK: Send

    /// Sends one frame, copying `frame` into libzmq. `more: true` says further frames of the
    /// same message follow. Waits up to `sendTimeout` for queue room.
    public func send(_ frame: UnsafeRawBufferPointer, more: Bool = false) throws {
        try send(frame, more: more, peer: nil)
    }

    /// Sends one frame without copying: libzmq takes over the message's buffer, and `message`
    /// is left empty (reusable for receiving).
    public func send(_ message: ZMQMessage, more: Bool = false) throws {
        try send(message, more: more, peer: nil)
    }

    /// Sends a whole message of copied frames.
    public func send(frames: [[UInt8]]) throws {
        precondition(!frames.isEmpty, "a message has at least one frame")
        let peer = kind == .router ? frames[0] : nil
        for (index, frame) in frames.enumerated() {
            try frame.withUnsafeBytes {
                try send($0, more: index < frames.count - 1, peer: index == 0 ? peer : nil)
            }
        }
    }

    /// ROUTER: sends `body` (copied) to the peer with `identity`.
    /// Throws `.hostUnreachable` if no such peer is connected.
    public func send(to identity: [UInt8], body: UnsafeRawBufferPointer) throws {
        try sendIdentity(identity)
        try send(body, more: false, peer: identity)
    }

    /// ROUTER: sends `body` (copied) to the peer with `identity`.
    public func send(to identity: [UInt8], body: [UInt8]) throws {
        try body.withUnsafeBytes { try send(to: identity, body: $0) }
    }

    /// ROUTER: sends `message` to the peer with `identity` without copying its buffer.
    public func send(to identity: [UInt8], message: ZMQMessage) throws {
        try sendIdentity(identity)
        try send(message, more: false, peer: identity)
    }

    private func sendIdentity(_ identity: [UInt8]) throws {
        precondition(kind == .router, "send(to:) addresses a peer by identity, which only a ROUTER does")
        try identity.withUnsafeBytes { try send($0, more: true, peer: identity) }
    }

    private func send(_ frame: UnsafeRawBufferPointer, more: Bool, peer: [UInt8]?) throws {
        let handle = try liveHandle("zmq_send")
        try applySendTimeout()
        try call("zmq_send", translate: { sendError($0, peer: peer) }) {
            zmq_send(handle, frame.baseAddress, frame.count, more ? ZMQ_SNDMORE : 0)
        }
    }

    private func send(_ message: ZMQMessage, more: Bool, peer: [UInt8]?) throws {
        let handle = try liveHandle("zmq_msg_send")
        try applySendTimeout()
        try call("zmq_msg_send", translate: { sendError($0, peer: peer) }) {
            zmq_msg_send(message.pointer, handle, more ? ZMQ_SNDMORE : 0)
        }
    }

    private func sendError(_ code: Int32, peer: [UInt8]?) -> ZMQError? {
        switch code {
        case EAGAIN:
            let operation = peer.map { "send to \(ZMQError.describe(identity: $0))" } ?? "send"
            return .timeout(operation: operation, seconds: sendTimeout.seconds)
        case EHOSTUNREACH:
            return .hostUnreachable(peer: peer ?? [])
        default:
            return nil
        }
    }

    // MARK: Receive

    /// Receives one whole message as copied frames (a ROUTER's first frame is the sender's
    /// identity). For large payloads use `receive(into:)`, which does not copy.
    /// - Parameters:
    ///   - timeout: how long to wait for the first frame; `receiveTimeout` if nil.
    ///   - frameLimit: messages with more frames are drained, dropped and reported as
    ///     `.tooManyFrames`, so a misbehaving peer cannot make the receiver allocate without bound.
    public func receive(timeout: Duration? = nil, frameLimit: Int = 16) throws -> [[UInt8]] {
        precondition(frameLimit >= 1)
        let message = scratchMessage()
        var frames: [[UInt8]] = []
        var more = true
        while more {
            try receiveFrame(message, timeout: frames.isEmpty ? timeout : nil)
            more = message.hasMore
            if frames.count == frameLimit {
                try drain(message, counted: frames.count + 1, limit: frameLimit)
            }
            frames.append(message.array)
        }
        return frames
    }

    /// Receives one whole message into reusable frames without copying: on return `frames`
    /// holds exactly the message's frames, each readable in place through `bytes`. Existing
    /// `ZMQMessage` objects are reused, so a steady stream of messages allocates nothing.
    /// - Parameters:
    ///   - timeout: how long to wait for the first frame; `receiveTimeout` if nil.
    ///   - frameLimit: as in `receive(timeout:frameLimit:)`.
    public func receive(into frames: inout [ZMQMessage], timeout: Duration? = nil, frameLimit: Int = 16) throws {
        precondition(frameLimit >= 1)
        var count = 0
        var more = true
        while more {
            if count == frameLimit {
                try drain(frames[count - 1], counted: count, limit: frameLimit)
            }
            if count == frames.count { frames.append(ZMQMessage()) }
            try receiveFrame(frames[count], timeout: count == 0 ? timeout : nil)
            more = frames[count].hasMore
            count += 1
        }
        if frames.count > count { frames.removeLast(frames.count - count) }
    }

    /// Waits up to `timeout` (or `receiveTimeout`) for one frame. Later frames of a message
    /// have arrived with the first (libzmq delivers messages whole), so they never wait.
    private func receiveFrame(_ message: ZMQMessage, timeout: Duration?) throws {
        let handle = try liveHandle("zmq_msg_recv")
        let limit = timeout ?? receiveTimeout
        try applyReceiveTimeout(limit)
        try call("zmq_msg_recv", translate: { code in
            code == EAGAIN ? .timeout(operation: "receive", seconds: limit.seconds) : nil
        }) {
            zmq_msg_recv(message.pointer, handle, 0)
        }
    }

    /// Reads and discards the rest of an over-long message, then reports it.
    private func drain(_ message: ZMQMessage, counted: Int, limit: Int) throws -> Never {
        var count = counted
        while message.hasMore {
            try receiveFrame(message, timeout: nil)
            count += 1
        }
        throw ZMQError.tooManyFrames(count: count, limit: limit)
    }
}
