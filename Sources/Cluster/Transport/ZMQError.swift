import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the network or libzmq can do to a transport call, one clear line each.
///
/// The common failures get their own case with the context a user needs (which peer, which
/// endpoint, how long we waited); anything else lands in `.system` with the C function, errno
/// and `zmq_strerror` text, so no failure is ever reduced to "operation failed".
public enum ZMQError: Error, CustomStringConvertible, Equatable {
    /// A send or receive waited its whole timeout (EAGAIN under ZMQ_SNDTIMEO / ZMQ_RCVTIMEO).
    case timeout(operation: String, seconds: Double)
    /// A ROUTER was asked to send to an identity no connected peer has
    /// (EHOSTUNREACH under ZMQ_ROUTER_MANDATORY): the peer never connected or has gone.
    case hostUnreachable(peer: [UInt8])
    /// `bind` found the address taken by another socket or process.
    case addressInUse(endpoint: String)
    /// `bind`/`connect` could not parse or resolve the endpoint, or its transport is unknown.
    case invalidEndpoint(endpoint: String, reason: String)
    /// The socket was closed, or its context terminated (ETERM), while `function` was in use.
    case closed(function: String)
    /// A CURVE key is not 40 characters of Z85 (the text form of a 32-byte key).
    case invalidCurveKey(reason: String)
    /// This libzmq was built without CURVE (libsodium) support.
    case curveUnavailable
    /// A peer sent a multipart message with more frames than the receiver accepts; the frames
    /// were drained and dropped so the socket stays usable.
    case tooManyFrames(count: Int, limit: Int)
    /// Any other failure of a libzmq call.
    case system(function: String, errno: Int32, message: String)

    public var description: String {
        switch self {
        case let .timeout(operation, seconds):
            return "\(operation) timed out after \(formatSeconds(seconds)) s"
        case let .hostUnreachable(peer):
            return "cannot send to peer \(ZMQError.describe(identity: peer)): no connected peer "
                + "has that identity (it never connected or has disconnected)"
        case let .addressInUse(endpoint):
            return "cannot bind \(endpoint): address already in use"
        case let .invalidEndpoint(endpoint, reason):
            return "invalid endpoint '\(endpoint)': \(reason) "
                + "(expected transport://address, e.g. tcp://127.0.0.1:5555)"
        case let .closed(function):
            return "\(function): socket or context already closed"
        case let .invalidCurveKey(reason):
            return "invalid CURVE key: \(reason)"
        case .curveUnavailable:
            return "this libzmq has no CURVE support (zmq_has(\"curve\") is false; "
                + "install a libzmq built with libsodium)"
        case let .tooManyFrames(count, limit):
            return "dropped a message of \(count) frames (at most \(limit) accepted)"
        case let .system(function, errno, message):
            return "\(function) failed: \(message) (errno \(errno))"
        }
    }

    /// A peer identity for messages: printed as text when it is printable ASCII (identities
    /// this project sets, like `worker-3`), else as hex (libzmq's generated 5-byte ids).
    public static func describe(identity: [UInt8]) -> String {
        if !identity.isEmpty, identity.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            return "'" + String(decoding: identity, as: UTF8.self) + "'"
        }
        return "0x" + identity.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// libzmq's text for an errno, including its own codes above ZMQ_HAUSNUMERO.
    static func message(errno code: Int32) -> String {
        String(cString: zmq_strerror(code))
    }
}

private func formatSeconds(_ seconds: Double) -> String {
    let rounded = (seconds * 1000).rounded() / 1000
    return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
}

/// Runs one libzmq call that reports failure as -1 with errno, the way every C call in this
/// module is made (after swift-nio's `syscall(blocking:where:_:)`): retries EINTR, turns ETERM
/// into `.closed`, lets `translate` name the failures that need the caller's context (a peer,
/// an endpoint, a timeout), and throws `.system` with the function name for the rest.
///
/// Retrying EINTR restarts a blocking call with its full timeout; signals are rare enough here
/// that the extra wait is acceptable.
@discardableResult
func call(
    _ function: String,
    translate: (Int32) -> ZMQError? = { _ in nil },
    _ body: () -> Int32
) throws -> Int32 {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = zmq_errno()
        if code == EINTR { continue }
        if let specific = translate(code) { throw specific }
        if code == ETERM { throw ZMQError.closed(function: function) }
        throw ZMQError.system(function: function, errno: code, message: ZMQError.message(errno: code))
    }
}
