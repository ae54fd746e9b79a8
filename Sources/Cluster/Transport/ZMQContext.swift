import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One libzmq context: the I/O threads and the in-process namespace (`inproc://`) that its
/// sockets share. Thread-safe, as libzmq contexts are.
///
/// Every `ZMQSocket` keeps its context alive, so the context is terminated only after its last
/// socket has closed (`zmq_ctx_term` waits for open sockets). The context is created with
/// ZMQ_BLOCKY off and every socket gets a finite linger, so terminating never hangs on
/// unsent messages.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq background I/O threads; one moves about 1 GB/s.
    public init(ioThreads: Int = 1) throws {
        precondition(ioThreads >= 1, "a ZeroMQ context needs at least one I/O thread")
        guard let handle = zmq_ctx_new() else {
            let code = zmq_errno()
            throw ZMQError.system(function: "zmq_ctx_new", errno: code, message: ZMQError.message(errno: code))
        }
        self.handle = handle
        // Fully initialised from here: if a setting fails, deinit terminates the context.
        try call("zmq_ctx_set(ZMQ_IO_THREADS)") { zmq_ctx_set(handle, ZMQ_IO_THREADS, Int32(ioThreads)) }
        try call("zmq_ctx_set(ZMQ_BLOCKY)") { zmq_ctx_set(handle, ZMQ_BLOCKY, 0) }
    }

    deinit {
        // EINTR is the only failure that leaves the context alive; retry it.
        while zmq_ctx_term(handle) == -1 && zmq_errno() == EINTR {}
    }

    /// The libzmq library version this process runs against, e.g. (4, 3, 4).
    public static var libraryVersion: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether libzmq was built with a capability: "curve", "ipc", "draft", ...
    public static func hasCapability(_ name: String) -> Bool {
        zmq_has(name) != 0
    }
}
