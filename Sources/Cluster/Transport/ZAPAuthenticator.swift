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

/// Answers libzmq's ZAP requests (RFC 27) for one context. With an allow-list, CURVE clients
/// whose long-term public key is in it are admitted and every other client gets "400" and a
/// call to `onRejection`: without an authenticator, a CURVE server accepts any client that
/// knows its public key. With a connection limit (`ConnectionLimit`), a handshake while more
/// than the cap of the monitored socket's connections are open gets "300" (temporary: libzmq
/// sends the client no ERROR, so it reconnects by itself and is admitted once a place frees;
/// a "400" would end its reconnecting for good), counted and logged at a bounded rate.
///
/// Start it before the server socket binds; libzmq asks the handler bound at
/// `inproc://zeromq.zap.01` in the same context during each handshake of a socket with a ZAP
/// domain. One per context. It serves on its own thread until `stop()` or deinit.
/// `onRejection` and `log` run on that thread.
///
/// A "200" reply names the client's public key as the ZAP user id, so a server can tell which
/// key sent a message: `ZMQMessage.property("User-Id")`.
public final class ZAPAuthenticator {
    /// Where libzmq sends ZAP requests.
    public static let endpoint = "inproc://zeromq.zap.01"

    private let control: ZMQSocket
    private let finished = DispatchSemaphore(value: 0)
    private var stopped = false
    private let table: LockedTable?

    /// Binds the ZAP endpoint and starts serving.
    /// - Parameters:
    ///   - allowedPublicKeys: Z85 public keys of the clients to admit (validated here); nil:
    ///     any client of any mechanism (only the connection limit applies).
    ///   - limit: the socket whose connections are counted (monitored from here on: call this
    ///     before it binds) and the cap; nil: no limit.
    ///   - log: lines about handshakes refused for the cap, at most one per address and
    ///     window of 10 s plus a count (`RejectionLog`).
    ///   - onRejection: called for each handshake the allow-list refuses.
    /// - Throws: `.addressInUse` if another authenticator already serves this context,
    ///   `.invalidCurveKey` for a malformed key.
    public init(
        context: ZMQContext,
        allowedPublicKeys: [String]?,
        limit: (socket: ZMQSocket, connections: Int)? = nil,
        log: @escaping @Sendable (String) -> Void = { _ in },
        onRejection: @escaping @Sendable (ZAPRejection) -> Void = { _ in }
    ) throws {
        for key in allowedPublicKeys ?? [] { try CurveKeys.validate(key) }
        let handler = try ZMQSocket(context: context, kind: .reply)
        handler.sendTimeout = .seconds(1)
        try handler.bind(ZAPAuthenticator.endpoint)
        let id = UInt(bitPattern: ObjectIdentifier(handler).hashValue)

        let controlEndpoint = "inproc://recur.zap-control.\(id)"
        let control = try ZMQSocket(context: context, kind: .pair)
        control.sendTimeout = .seconds(1)
        try control.bind(controlEndpoint)
        let controlPeer = try ZMQSocket(context: context, kind: .pair)
        try controlPeer.connect(controlEndpoint)
        var monitor: ZMQSocket?
        if let limit {
            // Connected before the server binds, so no ACCEPTED is missed (libzmq would block
            // its I/O thread on a monitor without a reader, and this thread always reads).
            let monitorEndpoint = "inproc://recur.zap-monitor.\(id)"
            try limit.socket.monitor(monitorEndpoint, events: ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
            monitor = try ZMQSocket(context: context, kind: .pair)
            try monitor!.connect(monitorEndpoint)
            table = LockedTable(ConnectionTable(cap: limit.connections))
        } else {
            table = nil
        }
        // Nothing throws after this point, so deinit (which stops the thread) only ever runs
        // for an authenticator whose thread was started.
        self.control = control

        let service = ZAPService(handler: handler, control: controlPeer, monitor: monitor, table: table,
                                 allowed: allowedPublicKeys.map(Set.init), log: log, onRejection: onRejection)
        let finished = self.finished
        let thread = Thread {
            service.run()
            finished.signal()
        }
        thread.name = "recur.zap"
        thread.start()
    }

    /// A new cap, for handshakes from now on (a shard learns its run's workers from the
    /// setup). No effect without a limit.
    public func setConnectionCap(_ connections: Int) {
        table?.update { $0.cap = max(1, connections) }
    }

    /// The cap, open connections and refusals for it so far (nil without a limit).
    public var connections: (cap: Int, open: Int, refused: Int)? {
        table?.update { ($0.cap, $0.openCount, $0.refused) }
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

/// The connection table, shared by the serving thread and `setConnectionCap`.
final class LockedTable: @unchecked Sendable {
    private let lock = NSLock()
    private var table: ConnectionTable
    init(_ table: ConnectionTable) { self.table = table }
    func update<T>(_ body: (inout ConnectionTable) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&table)
    }
}

extension ZMQSocket {
    /// Starts a libzmq monitor (version 1 events) publishing `events` on the inproc
    /// `endpoint` through a PAIR socket; connect one PAIR there to read them.
    func monitor(_ endpoint: String, events: Int32) throws {
        let handle = try liveHandle("zmq_socket_monitor")
        try call("zmq_socket_monitor") { zmq_socket_monitor(handle, endpoint, events) }
    }

    /// Stops the monitor. Call it before the reader goes: libzmq sends each event with a
    /// blocking send from an I/O thread, which would wait forever for a reader that is gone.
    func stopMonitor() throws {
        let handle = try liveHandle("zmq_socket_monitor")
        try call("zmq_socket_monitor") { zmq_socket_monitor(handle, nil, 0) }
    }
}

/// The authenticator's thread-side state. Its sockets are created on the starting thread and
/// used only by the serving thread afterwards (Thread.start is the hand-over barrier).
private final class ZAPService: @unchecked Sendable {
    let handler: ZMQSocket
    let control: ZMQSocket
    let monitor: ZMQSocket?
    let table: LockedTable?
    /// nil: no allow-list, any mechanism.
    let allowed: Set<String>?
    let onRejection: @Sendable (ZAPRejection) -> Void
    /// Refusals for the cap: a flood of reconnecting peers is a count, not a log file.
    let refusals: RejectionLog

    init(handler: ZMQSocket, control: ZMQSocket, monitor: ZMQSocket?, table: LockedTable?, allowed: Set<String>?,
         log: @escaping @Sendable (String) -> Void, onRejection: @escaping @Sendable (ZAPRejection) -> Void) {
        self.handler = handler
        self.control = control
        self.monitor = monitor
        self.table = table
        self.allowed = allowed
        self.onRejection = onRejection
        refusals = RejectionLog(noun: "connection", log: log)
    }

    func run() {
        defer {
            // Unbind first so a new authenticator can bind the name as soon as stop() returns.
            try? handler.unbind(ZAPAuthenticator.endpoint)
            handler.close()
            control.close()
            monitor?.close()
        }
        let sockets = [control, handler] + (monitor.map { [$0] } ?? [])
        while true {
            // Event-driven: wakes for a request, a monitor event or the stop message; the
            // timeout ends a window of refusals (their counts are logged then).
            guard let ready = try? ZMQSocket.poll(sockets: sockets, timeout: .seconds(10)) else { return }
            if ready[0].contains(.readable) { return }
            if !ready.contains(where: { $0.contains(.readable) }) { refusals.flush() }
            // The events first: a connection's ACCEPTED is sent before its ZAP request, so the
            // connection asking is always counted.
            readMonitorEvents()
            if ready[1].contains(.readable) {
                // A failed reply leaves the REP socket expecting a send; nothing better to do
                // than keep serving, libzmq times the handshake out.
                try? serveOneRequest()
            }
        }
    }

    /// Takes every monitor event waiting, without blocking.
    func readMonitorEvents() {
        guard let monitor, let table else { return }
        while let frames = try? monitor.receive(timeout: .zero, frameLimit: 2) {
            guard let event = frames.first.flatMap(MonitorEvent.init(frame:)) else { continue }
            let descriptor = Int32(bitPattern: event.value)
            switch Int32(event.event) {
            case ZMQ_EVENT_ACCEPTED: table.update { $0.accepted(descriptor) }
            case ZMQ_EVENT_DISCONNECTED: table.update { $0.disconnected(descriptor) }
            default: break
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
        var userID = ""
        if let allowed {
            var publicKey: String?
            let reason: String
            if mechanism == "CURVE" {
                guard request.count == 7, request[6].count == CurveKeys.byteLength else {
                    return ("500", "malformed CURVE credentials", "")
                }
                let key = CurveKeys.encode(request[6])
                publicKey = key
                reason = allowed.contains(key) ? "" : "public key not in the allow-list"
            } else {
                reason = "only CURVE clients are accepted"
            }
            guard reason.isEmpty, let key = publicKey else {
                onRejection(ZAPRejection(mechanism: mechanism, publicKey: publicKey, address: text(3),
                                         domain: text(2), reason: reason))
                return ("400", reason, "")
            }
            userID = key
        }
        if let table, let cap = table.update({ $0.admit() ? nil : $0.cap }) {
            let address = text(3).isEmpty ? "unknown address" : text(3)
            refusals.reject(from: address, "more than \(cap) connections open at once (the run's members + \(ConnectionLimit.strangers)); it may retry")
            return ("300", "too many connections", "")
        }
        return ("200", "OK", userID)
    }
}
