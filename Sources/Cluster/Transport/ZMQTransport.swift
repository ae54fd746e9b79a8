import Foundation

/// Settings of the coordinator's ROUTER socket.
public struct ZMQServerSettings: Sendable {
    /// ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5555 or tcp://127.0.0.1:* (any port).
    public var bind: String
    /// libzmq I/O threads (one moves about 1 GB/s).
    public var ioThreads = 1
    /// Larger messages are dropped by libzmq before they are buffered.
    public var maxMessageBytes: Int
    /// Messages that may queue per peer before libzmq stops reading from it (no message is
    /// lost: the peer waits). A correct peer has a few in flight at once (two parts of a push,
    /// heartbeats), so a short queue costs nothing and bounds what one connection holds.
    public var receiveQueue = 4
    /// Connections open at once (`ConnectionLimit`): past it a handshake is refused until one
    /// closes. nil: no cap (then nothing bounds the total across peers).
    public var maxConnections: Int?
    /// A connection that has not finished its handshake in this many seconds is closed; it
    /// is also how soon a peer refused for the cap tries again.
    public var handshakeTimeout: Double = 5
    /// A peer whose queue stays full this long counts as not reading.
    public var sendTimeout: Double = 30
    /// CurveZMQ: the coordinator's secret key and the workers' allowed public keys.
    public var curve: CurveServerSettings?

    public init(bind: String, maxMessageBytes: Int) {
        self.bind = bind
        self.maxMessageBytes = maxMessageBytes
    }
}

public struct CurveServerSettings: Sendable {
    public var secretKey: String
    public var allowedPublicKeys: [String]
    public init(secretKey: String, allowedPublicKeys: [String]) {
        self.secretKey = secretKey
        self.allowedPublicKeys = allowedPublicKeys
    }
}

public struct CurveClientSettings: Sendable {
    public var serverPublicKey: String
    public var publicKey: String
    public var secretKey: String
    public init(serverPublicKey: String, publicKey: String, secretKey: String) {
        self.serverPublicKey = serverPublicKey
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// `ServerTransport` on a ROUTER socket (ROUTER_MANDATORY, no handover), with CurveZMQ and a
/// ZAP allow-list when configured. Broadcasts share one buffer among all peers (zero-copy).
public final class ZMQServerTransport: ServerTransport, Pollable {
    /// Client sockets of this process that are polled with this one must share it (zmq_poll
    /// serves the sockets of one context).
    public let context: ZMQContext
    let socket: ZMQSocket
    private var authenticator: ZAPAuthenticator?
    public let endpoint: String
    private let sendTimeout: Double
    private var frames: [ZMQMessage] = []
    /// The last broadcast body, sent to every peer without a copy per peer.
    private var shared = ZMQSharedBuffer(count: 0)

    /// - Parameter log: (on the authenticator's thread) a line for every connection the
    ///   CurveZMQ allow-list refuses, and rate-limited lines for those refused for the cap.
    public init(_ settings: ZMQServerSettings, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        context = try ZMQContext(ioThreads: max(1, settings.ioThreads))
        let socket = try ZMQSocket(context: context, kind: .router)
        self.socket = socket
        sendTimeout = settings.sendTimeout
        try socket.setRouterHandover(false)
        try socket.setLinger(.seconds(2))   // the final Shutdown must leave before close
        try socket.setMaximumMessageSize(Int64(settings.maxMessageBytes))
        // At most this many messages queue per peer: a peer that floods cannot grow memory
        // past (receiveQueue + 1) × maxMessageBytes; a correct worker has at most 2 parts and a
        // few heartbeats in flight.
        try socket.setHighWaterMarks(send: 64, receive: Int32(settings.receiveQueue))
        try socket.setHandshakeTimeout(.milliseconds(Int(settings.handshakeTimeout * 1000)))
        socket.sendTimeout = .seconds(settings.sendTimeout)
        if settings.curve != nil || settings.maxConnections != nil {
            // The limit is the ZAP handler's (libzmq asks it for NULL clients too once the
            // socket has a ZAP domain): it must run, and monitor this socket, before the bind.
            authenticator = try ZAPAuthenticator(context: context, allowedPublicKeys: settings.curve?.allowedPublicKeys,
                                                 limit: settings.maxConnections.map { (socket, $0) }, log: log) {
                log("rejected connection: \($0)")
            }
            try socket.setZAPDomain("recur")
        }
        if let curve = settings.curve { try socket.setCurveServer(secretKey: curve.secretKey) }
        endpoint = try socket.bind(settings.bind)
    }

    deinit { close() }

    /// The run's members are now `members` peers: the connection cap follows (no effect
    /// without one).
    public func admit(members: Int) {
        authenticator?.setConnectionCap(ConnectionLimit.connections(members: members))
    }

    /// The cap, open connections and handshakes refused for the cap (nil without a cap).
    public var connections: (cap: Int, open: Int, refused: Int)? { authenticator?.connections }

    public func receive(timeout: Double) throws -> Received? {
        try receiveOne(socket, into: &frames, timeout: timeout, routed: true)
    }

    public func send(_ body: UnsafeRawBufferPointer, to peer: PeerIdentity, waiting: Bool) throws {
        socket.sendTimeout = waiting ? .seconds(sendTimeout) : .zero
        defer { socket.sendTimeout = .seconds(sendTimeout) }
        do {
            try translate(peer) { try socket.send(to: peer, body: body) }
        } catch TransportError.sendTimedOut(let peer, _) where !waiting {
            throw TransportError.sendTimedOut(peer, seconds: 0)
        }
    }

    public func broadcast(_ body: UnsafeRawBufferPointer, to peers: [PeerIdentity]) throws {
        guard shared.waitUntilReleased(timeout: .seconds(sendTimeout)) else {
            // Some peer still holds the previous broadcast in its queue.
            throw TransportError.sendTimedOut(peers.first ?? [], seconds: sendTimeout)
        }
        if shared.count != body.count { shared = ZMQSharedBuffer(count: body.count) }
        shared.mutableBytes.copyMemory(from: body)
        for peer in peers {
            try translate(peer) { try socket.send(to: peer, message: try ZMQMessage(sharing: shared)) }
        }
    }

    private func translate(_ peer: PeerIdentity, _ send: () throws -> Void) throws {
        do {
            try send()
        } catch ZMQError.hostUnreachable {
            throw TransportError.peerGone(peer)
        } catch ZMQError.timeout {
            throw TransportError.sendTimedOut(peer, seconds: sendTimeout)
        }
    }

    public func close() {
        if authenticator?.connections != nil { try? socket.stopMonitor() }   // before its reader stops
        authenticator?.stop()
        authenticator = nil
        socket.close()
    }
}

/// `ClientTransport` on a DEALER socket with a unique identity (host:pid:random).
public final class ZMQClientTransport: ClientTransport, Pollable {
    public let context: ZMQContext
    let socket: ZMQSocket
    private let sendTimeout: Double
    private var frames: [ZMQMessage] = []

    /// `context`: share the one of the sockets this one is polled with (see `ZMQServerTransport.context`).
    public init(connect endpoint: String, sendTimeout: Double, curve: CurveClientSettings?, context: ZMQContext? = nil) throws {
        if let context { self.context = context } else { self.context = try ZMQContext() }
        socket = try ZMQSocket(context: self.context, kind: .dealer)
        self.sendTimeout = sendTimeout
        try socket.setIdentity("\(ProcessInfo.processInfo.hostName):\(getpid()):\(UInt32.random(in: 0...UInt32.max))")
        try socket.setLinger(.seconds(2))   // let the last push or error leave before exit
        socket.sendTimeout = .seconds(sendTimeout)
        if let curve {
            try socket.setCurveClient(serverPublicKey: curve.serverPublicKey, publicKey: curve.publicKey, secretKey: curve.secretKey)
        }
        try socket.connect(endpoint)
    }

    deinit { close() }

    public func receive(timeout: Double) throws -> Received? {
        try receiveOne(socket, into: &frames, timeout: timeout, routed: false)
    }

    public func send(_ body: UnsafeRawBufferPointer) throws {
        do {
            try socket.send(body)
        } catch ZMQError.timeout {
            throw TransportError.sendTimedOut([], seconds: sendTimeout)
        }
    }

    public func close() { socket.close() }

    public func discard() {
        try? socket.setLinger(.zero)
        socket.close()
    }
}

/// Waits up to `timeout` seconds for one message into the reusable `frames`: nil on timeout.
/// A ROUTER (`routed`) message must be [identity, body], a DEALER's [body]; anything else,
/// and messages past the frame limit, come back as `.malformed`.
private func receiveOne(_ socket: ZMQSocket, into frames: inout [ZMQMessage], timeout: Double,
                        routed: Bool) throws -> Received? {
    do {
        try socket.receive(into: &frames, timeout: .milliseconds(Int(timeout * 1000)))
    } catch ZMQError.timeout {
        return nil
    } catch ZMQError.tooManyFrames(let count, _) {
        return .malformed(from: routed ? nil : [], reason: "\(count) frames")
    }
    let bodyIndex = routed ? 1 : 0
    guard frames.count == bodyIndex + 1 else {
        return .malformed(from: routed ? frames.first?.array : [], reason: "\(frames.count - bodyIndex) body frames, expected 1")
    }
    return .message(from: routed ? frames[0].array : [], body: frames[bodyIndex].bytes)
}
