import CZeroMQ
import Dispatch
import Foundation

/// A CURVE client the authenticator turned away, for the caller's log.
public struct ZAPRejection: Sendable, Equatable, CustomStringConvertible {
    /// The security mechanism the client used ("CURVE", "NULL", "PLAIN").
    public let mechanism: String
    /// The client's long-term public key in Z85, for CURVE.
    public let publicKey: String?
    /// The client's network address as libzmq reports it, e.g. `127.0.0.1`.
    public let address: String
    /// The ZAP domain of the server socket (empty if none was set).
    public let domain: String
    /// Why it was refused.
    public let reason: String

    public var description: String {
        let key = publicKey.map { " with public key \($0)" } ?? ""
        return "refused \(mechanism) client at \(address.isEmpty ? "unknown address" : address)\(key): \(reason)"
    }
}

/// Answers libzmq's ZAP requests (RFC 27) for one context: CURVE clients whose long-term
/// public key is in the allow-list get "200", every other client "400" and a call to
/// `onRejection`. Without an authenticator, a CURVE server accepts any client that knows its
/// public key; with one, only the listed workers get in.
///
/// Start it before the CURVE server socket accepts connections; libzmq asks the handler bound
/// at `inproc://zeromq.zap.01` in the same context during each handshake. One per context.
/// It serves on its own thread until `stop()` or deinit. `onRejection` runs on that thread.
///
/// A "200" reply names the client's public key as the ZAP user id, so a server can tell which
/// key sent a message: `ZMQMessage.property("User-Id")`.
public final class ZAPAuthenticator {
    /// Where libzmq sends ZAP requests.
    public static let endpoint = "inproc://zeromq.zap.01"

    private let control: ZMQSocket
    private let finished = DispatchSemaphore(value: 0)
    private var stopped = false

    /// Binds the ZAP endpoint and starts serving.
    /// - Parameters:
    ///   - allowedPublicKeys: Z85 public keys of the clients to admit (validated here).
    ///   - onRejection: called for each refused handshake; clients retry, so expect repeats.
    /// - Throws: `.addressInUse` if another authenticator already serves this context,
    ///   `.invalidCurveKey` for a malformed key.
    public init(
        context: ZMQContext,
        allowedPublicKeys: [String],
        onRejection: @escaping @Sendable (ZAPRejection) -> Void = { _ in }
    ) throws {
        for key in allowedPublicKeys { try CurveKeys.validate(key) }
        let handler = try ZMQSocket(context: context, kind: .reply)
        handler.sendTimeout = .seconds(1)
        try handler.bind(ZAPAuthenticator.endpoint)

        let controlEndpoint = "inproc://recur.zap-control.\(UInt(bitPattern: ObjectIdentifier(handler).hashValue))"
        let control = try ZMQSocket(context: context, kind: .pair)
        control.sendTimeout = .seconds(1)
        try control.bind(controlEndpoint)
        let controlPeer = try ZMQSocket(context: context, kind: .pair)
        try controlPeer.connect(controlEndpoint)
        // Nothing throws after this point, so deinit (which stops the thread) only ever runs
        // for an authenticator whose thread was started.
        self.control = control

        let service = ZAPService(handler: handler, control: controlPeer,
                                 allowed: Set(allowedPublicKeys), onRejection: onRejection)
        let finished = self.finished
        let thread = Thread {
            service.run()
            finished.signal()
        }
        thread.name = "recur.zap"
        thread.start()
    }

    /// Stops serving and waits for the thread to finish (it is only ever waiting on its
    /// sockets, so this returns promptly). Later handshakes of CURVE servers in this context
    /// are then not checked. Safe to call twice.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        // If this send failed, the thread has already left its loop and signalled.
        try? control.send(UnsafeRawBufferPointer(start: nil, count: 0))
        finished.wait()
        control.close()
    }

    deinit { stop() }
}

/// The authenticator's thread-side state. Its sockets are created on the starting thread and
/// used only by the serving thread afterwards (Thread.start is the hand-over barrier).
private final class ZAPService: @unchecked Sendable {
    let handler: ZMQSocket
    let control: ZMQSocket
    let allowed: Set<String>
    let onRejection: @Sendable (ZAPRejection) -> Void

    init(handler: ZMQSocket, control: ZMQSocket, allowed: Set<String>,
         onRejection: @escaping @Sendable (ZAPRejection) -> Void) {
        self.handler = handler
        self.control = control
        self.allowed = allowed
        self.onRejection = onRejection
    }

    func run() {
        defer {
            // Unbind first so a new authenticator can bind the name as soon as stop() returns.
            try? handler.unbind(ZAPAuthenticator.endpoint)
            handler.close()
            control.close()
        }
        while true {
            // Event-driven: wakes for a request or the stop message; the long timeout only
            // keeps every wait finite.
            guard let ready = try? ZMQSocket.poll(sockets: [control, handler], timeout: .seconds(3600)) else {
                return
            }
            if ready[0].contains(.readable) { return }
            if ready[1].contains(.readable) {
                // A failed reply leaves the REP socket expecting a send; nothing better to do
                // than keep serving, libzmq times the handshake out.
                try? serveOneRequest()
            }
        }
    }

    /// Reads one request and sends its reply (RFC 27 frames).
    func serveOneRequest() throws {
        let request = try handler.receive(timeout: .zero, frameLimit: 16)
        let reply = decide(request)
        let requestID = request.count > 1 ? request[1] : []
        try handler.send(frames: [Array("1.0".utf8), requestID, Array(reply.status.utf8),
                                  Array(reply.text.utf8), Array(reply.userID.utf8), []])
    }

    /// Request: version, request id, domain, address, routing id, mechanism, credentials...
    func decide(_ request: [[UInt8]]) -> (status: String, text: String, userID: String) {
        func text(_ index: Int) -> String {
            index < request.count ? String(decoding: request[index], as: UTF8.self) : ""
        }
        guard request.count >= 6, text(0) == "1.0" else {
            return ("500", "malformed ZAP request", "")
        }
        let mechanism = text(5)
        var publicKey: String?
        let reason: String
        if mechanism == "CURVE" {
            guard request.count == 7, request[6].count == CurveKeys.byteLength else {
                return ("500", "malformed CURVE credentials", "")
            }
            let key = CurveKeys.encode(request[6])
            if allowed.contains(key) { return ("200", "OK", key) }
            publicKey = key
            reason = "public key not in the allow-list"
        } else {
            reason = "only CURVE clients are accepted"
        }
        onRejection(ZAPRejection(mechanism: mechanism, publicKey: publicKey, address: text(3),
                                 domain: text(2), reason: reason))
        return ("400", reason, "")
    }
}
