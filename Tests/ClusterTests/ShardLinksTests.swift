import XCTest
@testable import Cluster
import Training
import Wire

/// The coordinator's side of its shards (`ShardLinks`), with in-memory shards that say what
/// the test scripts.
final class ShardLinksTests: XCTestCase {
    /// A shard broadcasts step s as soon as it applies s-1, so the old assignment's workers may
    /// have pushed s and the shard reported its norm blocks before a reassign at s reaches it.
    /// The shard then drops that sum; its report, taken after the reassign, made the coordinator
    /// order an apply the shard could not do (it exited 1: the join failure of
    /// scripts/test-cluster). Reports before a shard's ready, and those already held, are
    /// discarded; a report after the ready is the new assignment's and is kept.
    func testAReassignDiscardsTheOldAssignmentsNormReports() throws {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(steps: 8), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options())
        let networks = [InMemoryNetwork(), InMemoryNetwork()]
        let servers = networks.map { $0.server() }
        let identity: PeerIdentity = Array("coordinator".utf8)
        let endpoints = ["inmemory://shard0", "inmemory://shard1"]
        let links = try ShardLinks(ShardConnection(endpoints: endpoints, connect: { endpoint in
            networks[endpoints.firstIndex(of: endpoint)!].client(identity: identity)
        }, update: session.update), plan: session.plan, heartbeatTimeout: 5, log: { _ in })
        let shards = servers.map { ServerMessenger(transport: $0, limits: .standard, log: { _ in }) }
        func norms(_ step: UInt64, _ value: Double) -> Message {
            .shardReport(ShardReport(kind: .blockSquares, step: step, blockSquares: [value]))
        }
        // Shard 0's report of step 3 came in while the coordinator waited for something else.
        try shards[0].send(norms(3, 1), to: identity)
        try shards[0].send(.shardReport(ShardReport(kind: .workerJoined, step: 0)), to: identity)
        XCTAssertEqual(try links.poll().count, 2)
        links.hold(0, try XCTUnwrap(DecodedMessage.fromShard(norms(3, 1))))
        // Both report step 3 of the old assignment, then their ready; shard 1 then the new sum.
        for shard in shards {
            try shard.send(norms(3, 2), to: identity)
            try shard.send(.shardReport(ShardReport(kind: .ready, step: 3)), to: identity)
        }
        try shards[1].send(norms(3, 4), to: identity)
        try links.reassign(tickets: ["a", "b"], blockSizes: [3, 1], step: 3, resetState: false, stop: StopRequest())
        let after = try links.poll()
        XCTAssertEqual(after.count, 1, "\(after)")
        guard case (1, .shardReport(let report))? = after.first else { return XCTFail("\(after)") }
        XCTAssertEqual(report.kind, .blockSquares)
        XCTAssertEqual(report.blockSquares, [4])
    }
}

private extension DecodedMessage {
    /// `message` through the codec, as a shard's report arrives.
    static func fromShard(_ message: Message) throws -> DecodedMessage? {
        try WireCodec.decode(WireCodec.encode(message), limits: .standard)
    }
}
