import CZeroMQ

/// One frame owned by libzmq (a `zmq_msg_t`), so large payloads are read and written in
/// libzmq's own buffer without a copy.
///
/// Receiving: `ZMQSocket.receive(into:)` fills reusable messages; decode straight from
/// `bytes`, which stays valid until the message is received into again or deallocated.
/// Sending: `init(count:)` allocates a libzmq buffer, the caller encodes into `mutableBytes`,
/// and `ZMQSocket.send(_:more:)` hands the buffer to libzmq without copying it; the message is
/// empty afterwards and can be reused.
///
/// Not thread-safe; like its socket, a message belongs to one thread at a time.
public final class ZMQMessage {
    /// 64 opaque bytes libzmq requires at pointer alignment; allocated once, never moved.
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty frame, ready to receive into.
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)  // cannot fail
    }

    /// A frame of `count` uninitialised bytes in a libzmq buffer, to be filled through
    /// `mutableBytes` and sent without a copy.
    public init(count: Int) throws {
        precondition(count >= 0)
        // Initialise before storing: once `pointer` is set, a throw would run deinit, which
        // closes the message.
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        do {
            try call("zmq_msg_init_size") { zmq_msg_init_size(message, count) }
        } catch {
            message.deallocate()
            throw error
        }
        pointer = message
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws {
        try self.init(count: bytes.count)
        if bytes.count > 0 {
            mutableBytes.copyMemory(from: bytes)
        }
    }

    /// A frame that shares `buffer` with libzmq instead of copying it (`zmq_msg_init_data`).
    /// `buffer` is kept alive until libzmq has finished with the frame, and counts as in
    /// flight until then; see `ZMQSharedBuffer` for when it may be written again.
    ///
    /// - Parameter count: bytes from the start of `buffer` that form the frame (default all).
    public init(sharing buffer: ZMQSharedBuffer, count: Int? = nil) throws {
        let frameCount = count ?? buffer.count
        precondition(frameCount >= 0 && frameCount <= buffer.count,
                     "frame of \(frameCount) bytes does not fit a shared buffer of \(buffer.count)")
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        let hint = buffer.retainForFlight()
        do {
            try call("zmq_msg_init_data") {
                zmq_msg_init_data(message, buffer.base, frameCount, releaseSharedBuffer, hint)
            }
        } catch {
            releaseSharedBuffer(nil, hint)
            message.deallocate()
            throw error
        }
        pointer = message
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    /// Number of bytes in the frame.
    public var count: Int { zmq_msg_size(pointer) }

    /// The frame's bytes in libzmq's buffer: valid until this message is received into,
    /// sent, or deallocated.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: count)
    }

    /// The frame's bytes for filling a message made by `init(count:)` before sending it.
    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: count)
    }

    /// Whether more frames of the same multipart message follow this one (after a receive).
    public var hasMore: Bool { zmq_msg_more(pointer) != 0 }

    /// A copy of the frame as an array, for small frames such as identities.
    public var array: [UInt8] { [UInt8](bytes) }
}

extension ZMQMessage {
    /// A metadata property of a received frame (zmq_msg_gets), e.g. "User-Id" (the ZAP user
    /// id, here the client's CURVE public key), "Peer-Address", "Socket-Type"; nil if unset.
    public func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(pointer, name) else { return nil }
        return String(cString: value)
    }
}
