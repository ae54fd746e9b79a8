import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One libzmq socket. Not thread-safe (libzmq sockets are not): create, use and close it on one
/// thread, or hand it over with a synchronising barrier such as starting a thread.
///
/// Defaults chosen so that nothing blocks forever and closing never hangs: send and receive
/// time out after 30 s (`sendTimeout`, `receiveTimeout`), linger is 0 (unsent messages are
/// dropped at close; call `setLinger` before sending a last message you must deliver), and a
/// ROUTER fails with `.hostUnreachable` instead of silently dropping a message to an unknown
/// peer (ZMQ_ROUTER_MANDATORY).
///
/// Between a DEALER and a ROUTER no empty delimiter frame is used: a DEALER sends and receives
/// just its body frames; the ROUTER sees `[identity, body...]` and replies the same way.
public final class ZMQSocket {
    /// The socket patterns this project uses.
    public enum Kind: CustomStringConvertible {
        /// The coordinator's socket: receives `[identity, body...]`, routes replies by identity.
        case router
        /// A worker's socket: one per worker, with an identity, talks to one ROUTER.
        case dealer
        /// One-to-one socket, for tests and in-process control channels.
        case pair
        /// Strict request/reply server; used by the ZAP authenticator.
        case reply

        var rawValue: Int32 {
            switch self {
            case .router: return ZMQ_ROUTER
            case .dealer: return ZMQ_DEALER
            case .pair: return ZMQ_PAIR
            case .reply: return ZMQ_REP
            }
        }

        public var description: String {
            switch self {
            case .router: return "ROUTER"
            case .dealer: return "DEALER"
            case .pair: return "PAIR"
            case .reply: return "REP"
            }
        }
    }

    public let kind: Kind
    /// Kept so the context outlives its sockets (`zmq_ctx_term` waits for them).
    public let context: ZMQContext
    private(set) var handle: UnsafeMutableRawPointer?

    /// How long one send may wait for room in the peer's queue (or, on a DEALER, for a
    /// peer to connect) before throwing `.timeout`. Applied at the next send.
    public var sendTimeout: Duration = .seconds(30)
    /// How long `receive` waits when called without its own timeout. Applied at the next receive.
    public var receiveTimeout: Duration = .seconds(30)
    /// The timeouts currently set in libzmq, in milliseconds (to set them only when they change).
    private var appliedSendTimeout: Int32 = -1
    private var appliedReceiveTimeout: Int32 = -1
    /// The routing identity set with `setIdentity`, if any.
    public internal(set) var identity: [UInt8]?
    /// Reused for the copying `receive` so it allocates only the arrays it returns.
    private var scratch: ZMQMessage?

    public init(context: ZMQContext, kind: Kind) throws {
        guard let handle = zmq_socket(context.handle, kind.rawValue) else {
            let code = zmq_errno()
            if code == ETERM { throw ZMQError.closed(function: "zmq_socket") }
            throw ZMQError.system(function: "zmq_socket", errno: code, message: ZMQError.message(errno: code))
        }
        self.kind = kind
        self.context = context
        self.handle = handle
        // Fully initialised from here: if an option fails, deinit closes the socket.
        try setLinger(.zero)
        if kind == .router { try setRouterMandatory(true) }
    }

    deinit { close() }

    /// Closes the socket now; later calls throw `.closed`. Safe to call twice.
    public func close() {
        guard let handle else { return }
        zmq_close(handle)  // fails only for an invalid handle
        self.handle = nil
    }

    /// The live libzmq handle, or `.closed` naming the call that wanted it.
    func liveHandle(_ function: String) throws -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError.closed(function: function) }
        return handle
    }

    // MARK: Endpoints

    /// Binds to an endpoint such as `tcp://127.0.0.1:5555`, `tcp://*:5555`, `ipc:///tmp/x`
    /// or `inproc://name`. A tcp port of `*` asks the OS for a free one.
    /// - Returns: the endpoint actually bound (ZMQ_LAST_ENDPOINT), e.g. `tcp://127.0.0.1:40123`.
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        let handle = try liveHandle("zmq_bind")
        try call("zmq_bind", translate: { endpointError($0, endpoint: endpoint, binding: true) }) {
            zmq_bind(handle, endpoint)
        }
        return try lastEndpoint()
    }

    /// Stops listening on an endpoint given to (or returned by) `bind`. For `inproc://` the
    /// name is free again when this returns; `close` alone frees it only later, in libzmq's
    /// background reaper.
    public func unbind(_ endpoint: String) throws {
        let handle = try liveHandle("zmq_unbind")
        try call("zmq_unbind", translate: { endpointError($0, endpoint: endpoint, binding: false) }) {
            zmq_unbind(handle, endpoint)
        }
    }

    /// Connects to an endpoint. libzmq connects in the background and reconnects after
    /// losses, so a peer that is not up yet is not an error here; sends queue until it is.
    public func connect(_ endpoint: String) throws {
        let handle = try liveHandle("zmq_connect")
        try call("zmq_connect", translate: { endpointError($0, endpoint: endpoint, binding: false) }) {
            zmq_connect(handle, endpoint)
        }
    }

    /// Drops the connection to an endpoint given to `connect`.
    public func disconnect(_ endpoint: String) throws {
        let handle = try liveHandle("zmq_disconnect")
        try call("zmq_disconnect", translate: { endpointError($0, endpoint: endpoint, binding: false) }) {
            zmq_disconnect(handle, endpoint)
        }
    }

    /// The endpoint most recently bound or connected, with a wildcard port resolved.
    public func lastEndpoint() throws -> String {
        let handle = try liveHandle("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        try call("zmq_getsockopt(ZMQ_LAST_ENDPOINT)") {
            zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size)
        }
        return String(cString: buffer)
    }

    // MARK: Timeouts applied lazily

    /// Sets ZMQ_SNDTIMEO from `sendTimeout` if it changed since the last send.
    func applySendTimeout() throws {
        let milliseconds = sendTimeout.zmqMilliseconds
        guard milliseconds != appliedSendTimeout else { return }
        try setOption(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO", int32: milliseconds)
        appliedSendTimeout = milliseconds
    }

    /// Sets ZMQ_RCVTIMEO to `timeout` if it differs from what libzmq has.
    func applyReceiveTimeout(_ timeout: Duration) throws {
        let milliseconds = timeout.zmqMilliseconds
        guard milliseconds != appliedReceiveTimeout else { return }
        try setOption(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO", int32: milliseconds)
        appliedReceiveTimeout = milliseconds
    }

    /// The scratch frame for copying receives.
    func scratchMessage() -> ZMQMessage {
        if let scratch { return scratch }
        let message = ZMQMessage()
        scratch = message
        return message
    }
}

/// The clear error for a failed bind/connect/disconnect, or nil to fall back to `.system`.
private func endpointError(_ code: Int32, endpoint: String, binding: Bool) -> ZMQError? {
    switch code {
    case EADDRINUSE where binding:
        return .addressInUse(endpoint: endpoint)
    case EADDRNOTAVAIL where binding:
        return .invalidEndpoint(endpoint: endpoint, reason: "no local interface has that address")
    case EINVAL, EPROTONOSUPPORT, ENOCOMPATPROTO, ENODEV, ENOENT:
        return .invalidEndpoint(endpoint: endpoint, reason: ZMQError.message(errno: code))
    default:
        return nil
    }
}
