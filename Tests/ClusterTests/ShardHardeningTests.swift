import Foundation
import XCTest
import Cluster
import Recurrent
import Training
import Wire

/// Issue 21 at a parameter shard, fed by hand over the in-memory network: a joined worker's
/// forged chunk ranges are refused without a trap (item 2), only a node of the sender's own
/// block is taken so an honest push is never pushed out (item 4), a token holder can neither
/// take a rank without its ticket nor end the shard with a garbage setup (item 9).
final class ShardHardeningTests: XCTestCase {
    private let token = "shard-hardening-token"
    private let tickets = [String(repeating: "a", count: 32), String(repeating: "b", count: 32)]
    private var network: InMemoryNetwork!
    private var logs: LogLines!
    private var serving: BackgroundRun<Void>!
    private var shard: ShardServer!
    private var coordinator: InMemoryClientTransport!
    private var plan: RunPlan!

    /// One shard owning the whole slab of the tiny LSTM (2 workers, 4 chunks: blocks 0..<2
    /// and 2..<4), set up and assigned as a coordinator does it.
    override func setUpWithError() throws {
        network = InMemoryNetwork()
        logs = LogLines()
        var options = ShardOptions()
        options.joinToken = token
        options.heartbeatTimeout = 30
        let shard = ShardServer(options: options, transport: network.server(endpoint: "inmemory://shard"), log: logs.append)
        self.shard = shard
        serving = BackgroundRun(name: "shard") { try shard.serve() }
        plan = try RunPlan(config: ClusterFixtures.tinyConfig(steps: 5), corpus: ClusterFixtures.corpus)
        coordinator = network.client(identity: Array("coordinator".utf8))
        let update = ParameterUpdate(layout: plan.layout, optimizer: plan.config.optimizer, schedule: plan.config.schedule,
                                     clip: plan.config.clip, initial: ParameterInitializer.initialize(plan.layout, seed: 1))
        try send(.shardSetup(setup(update: update)), from: coordinator)
        XCTAssertEqual(try nextReport(), .ready)
        try send(.shardCommand(ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: tickets)), from: coordinator)
        XCTAssertEqual(try nextReport(), .ready)
    }

    override func tearDownWithError() throws {
        try? send(.shutdown(Shutdown(reason: "test over")), from: coordinator)
        if case .failure(let error)? = serving.wait(timeout: 5) { XCTFail("the shard failed: \(error)\n\(logs.text)") }
    }

    private func setup(update: ParameterUpdate, config: String? = nil) -> ShardSetup {
        ShardSetup(runConfig: config ?? plan.config.canonicalJSON(), shard: 0, shardCount: 1, step: 0, workerCount: 2,
                   parameters: WireTensor(name: "slab", shape: [plan.layout.count], values: Array(update.parameters)),
                   optimizerState: update.optimizer.stateBuffers.map { WireTensor(name: $0.name, shape: [$0.values.count], values: $0.values) },
                   optimizerSteps: 0, joinToken: token, vocabularySize: UInt32(plan.model.vocabularySize), labelCount: 0)
    }

    private func send(_ message: Message, from client: InMemoryClientTransport) throws {
        try WireCodec.encode(message).withUnsafeBytes { try client.send($0) }
    }

    /// The next message to `client` that is not a heartbeat.
    private func next(_ client: InMemoryClientTransport, timeout: Double = 5) throws -> DecodedMessage? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let received = try client.receive(timeout: 0.1), case .message(_, let body) = received else { continue }
            let message = try WireCodec.decode(body, limits: .standard)
            if case .heartbeat = message { continue }
            return message
        }
        return nil
    }

    private func nextReport() throws -> ShardReport.Kind? {
        guard case .shardReport(let report)? = try next(coordinator) else { return nil }
        return report.kind
    }

    /// Worker `rank` says hello with `ticket` (its own by default).
    private func worker(_ name: String, rank: Int, ticket: String? = nil) throws -> InMemoryClientTransport {
        let client = network.client(identity: Array(name.utf8))
        let corpus = ClusterFixtures.corpus
        let hello = Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest, host: name, pid: 1, threads: 1,
                          joinToken: token, rank: UInt32(rank), rankTicket: ticket ?? tickets[rank])
        try send(.hello(hello), from: client)
        return client
    }

    /// Both pieces of a node's gradient (every value `value`), as a worker pushes them to a
    /// shard owning the whole slab; `begin`/`end` as the push states them.
    private func push(_ client: InMemoryClientTransport, begin: UInt32, end: UInt32, value: Float = 0.5) throws {
        let pieces = SlabPartition.pushPieces(of: 0..<plan.layout.count, earlyFrom: plan.config.earlyElements(of: plan.layout))
        for (part, piece) in pieces.enumerated() {
            let slab = WireTensor(name: "slab", shape: [piece.count], values: Array(repeating: value, count: piece.count))
            try send(.gradientPush(GradientPush(step: 0, tokenCount: 0, lossSum: 0, tensors: [slab], computeSeconds: 0,
                                                communicateSeconds: 0, part: UInt32(part), parts: UInt32(pieces.count),
                                                chunkBegin: begin, chunkEnd: end, offset: UInt64(piece.lowerBound))), from: client)
        }
    }

    private func waitForLog(_ fragments: [String]) -> String? {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if let line = logs.line(containing: fragments) { return line }
            usleep(10_000)
        }
        return nil
    }

    func testForgedChunkRangesAreRefusedAndHonestPushesStillCount() throws {
        let w0 = try worker("w0", rank: 0), w1 = try worker("w1", rank: 1)
        XCTAssertEqual(try nextReport(), .workerJoined)
        XCTAssertEqual(try nextReport(), .workerJoined)
        guard case .weights? = try next(w0), case .weights? = try next(w1) else { return XCTFail("no weights:\n\(logs.text)") }

        try push(w0, begin: 2, end: 1)     // reversed: used to trap the shard (exit 132)
        try push(w0, begin: 0, end: 4)     // every chunk: used to be taken, the honest pushes refused
        try push(w0, begin: 2, end: 4)     // another worker's block
        try push(w0, begin: 0, end: 1)     // inside its block, but not one of its tree nodes
        XCTAssertNotNil(waitForLog(["chunks 2..<1", "does not hold"]), logs.text)
        XCTAssertNotNil(waitForLog(["chunks 0..<4", "does not hold"]), logs.text)
        XCTAssertNotNil(waitForLog(["chunks 2..<4", "does not hold"]), logs.text)

        // The honest pushes of both workers are taken: the shard reports the step's block norms.
        try push(w0, begin: 0, end: 2)
        try push(w1, begin: 2, end: 4)
        XCTAssertEqual(try nextReport(), .blockSquares, logs.text)
        try push(w0, begin: 0, end: 2)     // once more: a duplicate, named as one
        XCTAssertNotNil(waitForLog(["duplicate gradient part"]), logs.text)
        XCTAssertNil(serving.wait(timeout: 0), "the shard stopped:\n\(logs.text)")
    }

    func testARankIsTakenOnlyWithItsTicket() throws {
        let mallory = try worker("mallory", rank: 0, ticket: String(repeating: "0", count: 32))
        XCTAssertNotNil(waitForLog(["hello for rank 0 without that rank's ticket"]), logs.text)
        _ = try worker("w0", rank: 0)
        _ = try worker("w1", rank: 1)
        XCTAssertEqual(try nextReport(), .workerJoined)
        XCTAssertEqual(try nextReport(), .workerJoined)
        XCTAssertNil(try next(mallory, timeout: 0.5), "a peer without the ticket got the weights")
        try push(mallory, begin: 0, end: 2)
        XCTAssertNotNil(waitForLog(["from a peer that is not part of this shard's run"]), logs.text)
    }

    func testAGarbageSetupIsRefusedAndTheShardServesOn() throws {
        let other = network.client(identity: Array("token-holder".utf8))
        let update = ParameterUpdate(layout: plan.layout, optimizer: plan.config.optimizer, schedule: plan.config.schedule,
                                     clip: plan.config.clip, initial: ParameterInitializer.initialize(plan.layout, seed: 1))
        try send(.shardSetup(setup(update: update, config: "{\"not\": \"a config\"}")), from: other)
        XCTAssertNotNil(waitForLog(["unreadable run config"]), logs.text)
        var huge = setup(update: update)
        huge.vocabularySize = 0x7FFF_FFFF
        try send(.shardSetup(huge), from: other)
        XCTAssertNotNil(waitForLog(["vocabulary size 2147483647"]), logs.text)
        XCTAssertNil(serving.wait(timeout: 0.2), "a garbage setup ended the shard:\n\(logs.text)")
        // The run's own workers still join and get their weights.
        let w0 = try worker("w0", rank: 0)
        _ = try worker("w1", rank: 1)
        XCTAssertEqual(try nextReport(), .workerJoined)
        guard case .weights? = try next(w0) else { return XCTFail("no weights after the garbage setups:\n\(logs.text)") }
    }
}
