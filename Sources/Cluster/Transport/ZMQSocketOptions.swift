import CZeroMQ

/// Socket options. Set them before `bind`/`connect`: libzmq applies most of them only to
/// connections made afterwards.
extension ZMQSocket {
    /// The routing identity a ROUTER sees for this socket (ZMQ_ROUTING_ID): 1 to 255 bytes,
    /// not starting with a zero byte (libzmq reserves those for its generated ids).
    /// Set before `connect`. A ROUTER refuses a second connection with an identity in use.
    public func setIdentity(_ identity: [UInt8]) throws {
        precondition((1...255).contains(identity.count), "an identity has 1 to 255 bytes")
        precondition(identity[0] != 0, "identities starting with a zero byte are reserved by libzmq")
        try identity.withUnsafeBytes { try setOption(ZMQ_ROUTING_ID, "ZMQ_ROUTING_ID", bytes: $0) }
        self.identity = identity
    }

    /// The identity from a string, e.g. `worker-3`.
    public func setIdentity(_ identity: String) throws {
        try setIdentity(Array(identity.utf8))
    }

    /// How long `close` (and context termination) keeps trying to deliver queued messages
    /// (ZMQ_LINGER). Default 0: drop them.
    public func setLinger(_ linger: Duration) throws {
        try setOption(ZMQ_LINGER, "ZMQ_LINGER", int32: linger.zmqMilliseconds)
    }

    /// ROUTER only: whether sending to an unknown identity throws `.hostUnreachable` (true, the
    /// default here) or is silently dropped (libzmq's default). When true, a full queue to a
    /// known peer makes send wait up to `sendTimeout` instead of dropping.
    public func setRouterMandatory(_ enabled: Bool) throws {
        precondition(kind == .router, "ZMQ_ROUTER_MANDATORY applies to ROUTER sockets")
        try setOption(ZMQ_ROUTER_MANDATORY, "ZMQ_ROUTER_MANDATORY", int32: enabled ? 1 : 0)
    }

    /// ROUTER only: whether a new connection with an identity already in use takes it over
    /// (ZMQ_ROUTER_HANDOVER; true) or is refused (false, libzmq's default). Turn it on so a
    /// restarted worker with the same identity is reachable before the ROUTER has noticed
    /// that its old connection died.
    public func setRouterHandover(_ enabled: Bool) throws {
        precondition(kind == .router, "ZMQ_ROUTER_HANDOVER applies to ROUTER sockets")
        try setOption(ZMQ_ROUTER_HANDOVER, "ZMQ_ROUTER_HANDOVER", int32: enabled ? 1 : 0)
    }

    /// The largest frame this socket accepts from a peer, in bytes (ZMQ_MAXMSGSIZE; nil for no
    /// limit, the default). The first line of defence against oversized messages: libzmq
    /// checks the size announced in the frame header, drops the frame before allocating it,
    /// and disconnects that peer (a DEALER peer then reconnects on its own). The application
    /// sees nothing of the dropped message.
    public func setMaximumMessageSize(_ bytes: Int64?) throws {
        if let bytes { precondition(bytes >= 0) }
        try setOption(ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE", int64: bytes ?? -1)
    }

    /// ZMTP heartbeats, so a dead peer is noticed even when no traffic flows: a PING every
    /// `interval`; the connection is dropped if nothing arrives for `timeout`; the peer is
    /// asked to drop it after `timeToLive` without our pings (rounded to 0.1 s by libzmq).
    public func setHeartbeat(interval: Duration, timeout: Duration, timeToLive: Duration) throws {
        try setOption(ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL", int32: interval.zmqMilliseconds)
        try setOption(ZMQ_HEARTBEAT_TIMEOUT, "ZMQ_HEARTBEAT_TIMEOUT", int32: timeout.zmqMilliseconds)
        try setOption(ZMQ_HEARTBEAT_TTL, "ZMQ_HEARTBEAT_TTL", int32: timeToLive.zmqMilliseconds)
    }

    /// How long a connection may take to finish its handshake (ZMQ_HANDSHAKE_IVL; libzmq's
    /// default 30 s) before libzmq closes it. Set before `bind`.
    public func setHandshakeTimeout(_ timeout: Duration) throws {
        try setOption(ZMQ_HANDSHAKE_IVL, "ZMQ_HANDSHAKE_IVL", int32: timeout.zmqMilliseconds)
    }

    /// Queue limits in messages per peer (ZMQ_SNDHWM / ZMQ_RCVHWM; libzmq default 1000).
    public func setHighWaterMarks(send: Int32, receive: Int32) throws {
        precondition(send >= 0 && receive >= 0)
        try setOption(ZMQ_SNDHWM, "ZMQ_SNDHWM", int32: send)
        try setOption(ZMQ_RCVHWM, "ZMQ_RCVHWM", int32: receive)
    }

    // MARK: CURVE

    /// Makes this socket the CURVE server side: peers must know `secretKey`'s public key and
    /// all traffic is encrypted. With a `ZAPAuthenticator` running in the same context,
    /// clients are also checked against its allow-list; without one, any client with the
    /// server's public key is accepted.
    /// - Parameter secretKey: the server's 40-character Z85 secret key.
    public func setCurveServer(secretKey: String) throws {
        try CurveKeys.requireSupport()
        let secret = try CurveKeys.decode(secretKey)
        try setOption(ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", int32: 1)
        try secret.withUnsafeBytes { try setOption(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", bytes: $0) }
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverPublicKey`,
    /// with its own long-term key pair. All keys are 40-character Z85 strings.
    public func setCurveClient(serverPublicKey: String, publicKey: String, secretKey: String) throws {
        try CurveKeys.requireSupport()
        let server = try CurveKeys.decode(serverPublicKey)
        let own = try CurveKeys.decode(publicKey)
        let secret = try CurveKeys.decode(secretKey)
        try server.withUnsafeBytes { try setOption(ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", bytes: $0) }
        try own.withUnsafeBytes { try setOption(ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", bytes: $0) }
        try secret.withUnsafeBytes { try setOption(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", bytes: $0) }
    }

    /// The ZAP domain sent with authentication requests from this (server) socket.
    public func setZAPDomain(_ domain: String) throws {
        try Array(domain.utf8).withUnsafeBytes { try setOption(ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", bytes: $0) }
    }

    // MARK: Raw setters

    func setOption(_ option: Int32, _ name: String, int32 value: Int32) throws {
        var value = value
        try setOption(option, name, raw: &value, size: MemoryLayout<Int32>.size)
    }

    func setOption(_ option: Int32, _ name: String, int64 value: Int64) throws {
        var value = value
        try setOption(option, name, raw: &value, size: MemoryLayout<Int64>.size)
    }

    func setOption(_ option: Int32, _ name: String, bytes: UnsafeRawBufferPointer) throws {
        try setOption(option, name, raw: bytes.baseAddress, size: bytes.count)
    }

    /// Reads back an integer option (to check what libzmq holds).
    func option(_ option: Int32, _ name: String) throws -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        let function = "zmq_getsockopt(\(name))"
        let handle = try liveHandle(function)
        try call(function) { zmq_getsockopt(handle, option, &value, &size) }
        return value
    }

    /// Reads back a 64-bit integer option.
    func option64(_ option: Int32, _ name: String) throws -> Int64 {
        var value: Int64 = 0
        var size = MemoryLayout<Int64>.size
        let function = "zmq_getsockopt(\(name))"
        let handle = try liveHandle(function)
        try call(function) { zmq_getsockopt(handle, option, &value, &size) }
        return value
    }

    private func setOption(_ option: Int32, _ name: String, raw: UnsafeRawPointer?, size: Int) throws {
        let function = "zmq_setsockopt(\(name))"
        let handle = try liveHandle(function)
        try call(function) { zmq_setsockopt(handle, option, raw, size) }
    }
}
