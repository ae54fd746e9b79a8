/// The interface the roles' message layer sees: whole message bodies to and from peers,
/// with finite waits. `ZMQServerTransport`/`ZMQClientTransport` implement it over ZeroMQ
/// ROUTER/DEALER sockets; `InMemoryNetwork` implements it with queues for tests that run
/// the coordinator and worker logic without sockets or processes.

/// A peer as the server transport names it (the DEALER's routing identity).
public typealias PeerIdentity = [UInt8]

/// One thing `receive` got.
public enum Received {
    /// A message body; `body` is valid until the next `receive` on the same transport.
    case message(from: PeerIdentity, body: UnsafeRawBufferPointer)
    /// Something that is not one message body (wrong frame count, oversized); dropped.
    case malformed(from: PeerIdentity?, reason: String)
}

/// Failures of sending that name the peer; the roles turn them into "worker N is gone".
public enum TransportError: Error, Equatable, CustomStringConvertible {
    /// The peer disconnected (ROUTER_MANDATORY: no route to its identity).
    case peerGone(PeerIdentity)
    /// The peer's queue stayed full for the whole send timeout: it stopped reading.
    case sendTimedOut(PeerIdentity, seconds: Double)

    public var description: String {
        switch self {
        case .peerGone: return "the peer is gone (connection closed)"
        case .sendTimedOut(_, let seconds): return "the peer does not take messages (send timed out after \(seconds) s)"
        }
    }
}

/// The coordinator's side: many peers, each named by identity.
public protocol ServerTransport: AnyObject {
    /// The bound endpoint (with the real port after binding port 0 or `*`).
    var endpoint: String { get }
    /// Waits up to `timeout` seconds (0 = poll) for one message; nil when none came.
    func receive(timeout: Double) throws -> Received?
    /// With `waiting`, waits up to the send timeout for room in the peer's queue; without,
    /// a full queue throws `sendTimedOut(peer, seconds: 0)` at once (heartbeats must never
    /// hold up the loop).
    func send(_ body: UnsafeRawBufferPointer, to peer: PeerIdentity, waiting: Bool) throws
    /// The same body to each of `peers` (the weights broadcast), copied once however many.
    func broadcast(_ body: UnsafeRawBufferPointer, to peers: [PeerIdentity]) throws
    /// Closes after letting queued messages leave for a short linger.
    func close()
    /// The run now has `members` peers (a shard learns them from its setup): a transport that
    /// caps its connections (`ConnectionLimit`) admits that many plus a few strangers.
    func admit(members: Int)
}

extension ServerTransport {
    /// A transport without a connection cap has nothing to change.
    public func admit(members: Int) {}

    public func send(_ body: UnsafeRawBufferPointer, to peer: PeerIdentity) throws {
        try send(body, to: peer, waiting: true)
    }
}

/// A worker's side: one server.
public protocol ClientTransport: AnyObject {
    /// As `ServerTransport.receive`; `from` is empty.
    func receive(timeout: Double) throws -> Received?
    func send(_ body: UnsafeRawBufferPointer) throws
    func close()
    /// Closes at once, dropping whatever is still queued (the server is known to be gone).
    func discard()
}
