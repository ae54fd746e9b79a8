import Training
import Wire

/// A worker's links: to its coordinator and, in a sharded run, to each parameter shard (the
/// Welcome names them). Receives from whichever has a message; sends what the role says.
final class ClientLinks {
    let coordinator: ClientMessenger
    private var shards: [ClientMessenger] = []
    /// How to reach a shard by its endpoint.
    private let connect: (String) throws -> ClientTransport
    private let log: (String) -> Void

    init(coordinator: ClientTransport, connect: @escaping (String) throws -> ClientTransport, log: @escaping (String) -> Void) {
        self.coordinator = ClientMessenger(transport: coordinator, log: log)
        self.connect = connect
        self.log = log
    }

    /// The endpoints `shards` are linked to.
    private var linkedEndpoints: [String] = []

    /// One link to each of `endpoints`. A new assignment of the same shards keeps the links
    /// (each shard takes the worker's new hello on them): a new connection needs a place
    /// under the shard's connection cap (`ConnectionLimit`), and without CurveZMQ peers that
    /// are not members may hold the free ones while they stay connected. Other endpoints:
    /// the previous links are closed and new ones made.
    func link(shards endpoints: [String], limits: DecodeLimits) throws {
        if endpoints != linkedEndpoints || shards.isEmpty {
            closeShards()
            shards = try endpoints.map { ClientMessenger(transport: try connect($0), log: log) }
            linkedEndpoints = endpoints
        }
        for shard in shards { shard.limits = limits }
    }

    func closeShards() {
        shards.forEach { $0.transport.close() }
        shards = []
        linkedEndpoints = []
    }

    /// Shards first, then the coordinator.
    func close() {
        closeShards()
        coordinator.transport.close()
    }

    func messenger(_ sender: Sender) -> ClientMessenger {
        switch sender {
        case .coordinator: return coordinator
        case .shard(let k): return shards[k]
        }
    }

    /// The next message from any shard or the coordinator, waiting up to `timeout` on all of
    /// them at once (on the coordinator's socket alone when there are no shards).
    func receive(timeout: Double) throws -> (Sender, DecodedMessage)? {
        guard !shards.isEmpty else { return try coordinator.receive(timeout: timeout).map { (.coordinator, $0) } }
        for attempt in 0..<2 {
            for (k, shard) in shards.enumerated() {
                if let message = try shard.receive(timeout: 0) { return (.shard(k), message) }
            }
            if let message = try coordinator.receive(timeout: 0) { return (.coordinator, message) }
            if attempt == 0 { try waitForInput([coordinator.transport] + shards.map { $0.transport }, timeout: timeout) }
        }
        return nil
    }
}
