import Foundation

/// Transports over in-process queues with the semantics the roles rely on from ZeroMQ:
/// whole messages in order per peer, finite waits, and a send to a peer that has closed
/// fails with `TransportError.peerGone` (ROUTER_MANDATORY). Bodies are copied, so the
/// codec runs for real. Used by unit tests of the coordinator and worker logic.
public final class InMemoryNetwork: @unchecked Sendable {
    private let condition = NSCondition()
    /// Messages waiting at the server (from, body) and at each client.
    private var toServer: [(PeerIdentity, [UInt8])] = []
    private var toClient: [PeerIdentity: [[UInt8]]] = [:]
    private var connected: Set<PeerIdentity> = []
    private var serverClosed = false

    public init() {}

    public func server(endpoint: String = "inmemory://coordinator") -> InMemoryServerTransport {
        InMemoryServerTransport(network: self, endpoint: endpoint)
    }

    public func client(identity: PeerIdentity) -> InMemoryClientTransport {
        condition.lock()
        connected.insert(identity)
        toClient[identity] = []
        condition.unlock()
        return InMemoryClientTransport(network: self, identity: identity)
    }

    /// Raw bytes to the server as if `identity` had sent them (hostile-peer tests).
    public func inject(_ body: [UInt8], from identity: PeerIdentity) {
        enqueue(toServer: body, from: identity)
    }

    fileprivate func enqueue(toServer body: [UInt8], from identity: PeerIdentity) {
        condition.lock()
        if !serverClosed { toServer.append((identity, body)) }
        condition.broadcast()
        condition.unlock()
    }

    fileprivate func enqueue(toClient body: [UInt8], identity: PeerIdentity) throws {
        condition.lock()
        defer { condition.unlock() }
        guard connected.contains(identity) else { throw TransportError.peerGone(identity) }
        toClient[identity]!.append(body)
        condition.broadcast()
    }

    /// Waits up to `timeout` for `take` to find something.
    fileprivate func wait<T>(timeout: Double, _ take: () -> T?) -> T? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let value = take() { return value }
            guard condition.wait(until: deadline) else { return take() }
        }
    }

    fileprivate func takeForServer(timeout: Double) -> (PeerIdentity, [UInt8])? {
        wait(timeout: timeout) { toServer.isEmpty ? nil : toServer.removeFirst() }
    }

    fileprivate func takeForClient(_ identity: PeerIdentity, timeout: Double) -> [UInt8]? {
        wait(timeout: timeout) { () -> [UInt8]? in
            guard let queue = toClient[identity], !queue.isEmpty else { return nil }
            return toClient[identity]!.removeFirst()
        }
    }

    fileprivate func disconnect(_ identity: PeerIdentity) {
        condition.lock()
        connected.remove(identity)
        toClient[identity] = nil
        condition.unlock()
    }

    fileprivate func closeServer() {
        condition.lock()
        serverClosed = true
        toServer = []
        condition.unlock()
    }
}

public final class InMemoryServerTransport: ServerTransport {
    private let network: InMemoryNetwork
    public let endpoint: String
    /// Keeps the last body alive until the next receive (as ZeroMQ frames are).
    private var last: [UInt8] = []

    fileprivate init(network: InMemoryNetwork, endpoint: String) {
        self.network = network
        self.endpoint = endpoint
    }

    public func receive(timeout: Double) throws -> Received? {
        guard let (from, body) = network.takeForServer(timeout: timeout) else { return nil }
        last = body
        return last.withUnsafeBytes { .message(from: from, body: $0) }
    }

    public func send(_ body: UnsafeRawBufferPointer, to peer: PeerIdentity, waiting: Bool) throws {
        try network.enqueue(toClient: Array(body), identity: peer)
    }

    public func broadcast(_ body: UnsafeRawBufferPointer, to peers: [PeerIdentity]) throws {
        let bytes = Array(body)
        for peer in peers { try network.enqueue(toClient: bytes, identity: peer) }
    }

    public func close() { network.closeServer() }
}

public final class InMemoryClientTransport: ClientTransport {
    private let network: InMemoryNetwork
    public let identity: PeerIdentity
    private var last: [UInt8] = []

    fileprivate init(network: InMemoryNetwork, identity: PeerIdentity) {
        self.network = network
        self.identity = identity
    }

    public func receive(timeout: Double) throws -> Received? {
        guard let body = network.takeForClient(identity, timeout: timeout) else { return nil }
        last = body
        return last.withUnsafeBytes { .message(from: [], body: $0) }
    }

    public func send(_ body: UnsafeRawBufferPointer) throws {
        network.enqueue(toServer: Array(body), from: identity)
    }

    /// Disconnects: later sends to this peer fail with `peerGone`.
    public func close() { network.disconnect(identity) }
    public func discard() { close() }
}
