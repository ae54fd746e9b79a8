import Cluster
import Recurrent
import Training
import Wire

/// A parameter shard's message handling (`ShardServer`), fed over the in-memory network: the
/// shard is set up by its coordinator and both workers of the assignment are admitted (a fixed
/// prefix), then the input's frames arrive from worker 0, worker 1 and a stranger, then every
/// peer says Shutdown. Whatever the frames, the shard must refuse what it cannot take and keep
/// serving: a trap, or `serve` ending with an error, is a finding. The input never holds the
/// job's token (no seed carries it), so a frame cannot set up a new run.
///
/// Input: frames of [sender: 1 byte, 0 worker 0 · 1 worker 1 · else stranger][length: 2 bytes,
/// little-endian][body: a wire message]; a truncated last frame is dropped. An input whose
/// frames are all wire messages counts as decoded, else (after the shard served it) rejected.
extension FuzzTargets {
    static let shardMessages = FuzzTarget(
        name: "shard-messages",
        seeds: { ShardFixture.shared.seeds },
        dictionary: [[0x00], [0x01], [0x02], [0x00, 0x01], [0xff, 0xff], [0x08, 0x01], [0x80, 0x80, 0x80, 0x80, 0x10]]
            + tokens(["slab", "chunk_begin", "recur-fuzz-host"]),
        body: { bytes in
            let fixture = ShardFixture.shared
            let network = InMemoryNetwork()
            let server = network.server(endpoint: "inmemory://shard")
            let peers = ShardFixture.identities.map { network.client(identity: $0) }   // connected while the shard serves
            for (identity, body) in fixture.prefix { network.inject(body, from: identity) }
            let frames = ShardFixture.frames(bytes)
            for frame in frames {
                network.inject(frame.body, from: ShardFixture.identities[1 + min(Int(frame.sender), 2)])
            }
            for identity in ShardFixture.identities { network.inject(fixture.shutdown, from: identity) }
            var options = ShardOptions()
            options.joinToken = ShardFixture.token
            let shard = ShardServer(options: options, transport: server, log: { _ in })
            do {
                try shard.serve()
            } catch {
                throw Finding("a peer's messages ended the shard: \(error)")
            }
            withExtendedLifetime(peers) {}
            if frames.contains(where: { (try? WireCodec.decode($0.body, limits: .standard)) == nil }) { throw NotAllMessages() }
        },
        isTyped: { $0 is NotAllMessages })

    /// Some frame of the input is not a wire message (the shard was still fed it).
    struct NotAllMessages: Error {}
}

/// The run the shard serves: a one-layer GRU small enough that a push is a few hundred bytes,
/// 2 workers over 4 chunks, one shard holding the whole slab.
private final class ShardFixture: Sendable {
    static let shared = ShardFixture()
    static let token = "fuzz-job-token-7d1c"
    static let tickets = ["ticket-rank-0-5a2e", "ticket-rank-1-93bf"]
    /// Coordinator, worker 0, worker 1, stranger.
    static let identities: [PeerIdentity] = ["coordinator", "worker-0", "worker-1", "stranger"].map { Array($0.utf8) }

    let prefix: [(PeerIdentity, [UInt8])]
    let shutdown: [UInt8]
    let seeds: [[UInt8]]

    private init() {
        let corpus = Corpus(text: String(repeating: "abcab cba ", count: 40), name: "fuzz")
        var config = TrainingConfig()
        config.cell = .gru
        config.layers = 1
        config.hidden = 2
        config.streams = 4
        config.window = 2
        config.chunkStreams = 1
        config.steps = 3
        let plan = try! RunPlan(config: config, corpus: corpus)
        let layout = plan.layout
        let update = ParameterUpdate(layout: layout, optimizer: config.optimizer, schedule: config.schedule, clip: config.clip,
                                     initial: ParameterInitializer.initialize(layout, seed: 3))
        let setup = ShardSetup(runConfig: config.canonicalJSON(), shard: 0, shardCount: 1, step: 0, workerCount: 2,
                               parameters: WireTensor(name: "slab", shape: [layout.count], values: Array(update.parameters)),
                               optimizerState: update.optimizer.stateBuffers.map {
                                   WireTensor(name: $0.name, shape: [$0.values.count], values: $0.values)
                               },
                               optimizerSteps: 0, joinToken: Self.token, vocabularySize: UInt32(plan.model.vocabularySize), labelCount: 0)
        let reassign = ShardCommand(kind: .reassign, step: 0, workerCount: 2, rankTickets: Self.tickets)
        func hello(_ rank: Int, token: String, ticket: String) -> Message {
            .hello(Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest, host: "recur-fuzz-host", pid: 1,
                         threads: 1, joinToken: token, rank: UInt32(rank), rankTicket: ticket))
        }
        let ids = Self.identities
        prefix = [(ids[0], WireCodec.encode(.shardSetup(setup))), (ids[0], WireCodec.encode(.shardCommand(reassign))),
                  (ids[1], WireCodec.encode(hello(0, token: Self.token, ticket: Self.tickets[0]))),
                  (ids[2], WireCodec.encode(hello(1, token: Self.token, ticket: Self.tickets[1])))]
        shutdown = WireCodec.encode(.shutdown(Shutdown(reason: "fuzz input over")))

        // Each rank's honest pushes (its tree nodes, every piece), then hostile variants.
        let chunkCount = plan.chunkCount
        let pieces = SlabPartition.pushPieces(of: 0..<layout.count, earlyFrom: config.earlyElements(of: layout))
        func push(_ begin: Int, _ end: Int, step: UInt64 = 0, value: Float = 0.25, offsetShift: Int = 0) -> [[UInt8]] {
            pieces.enumerated().map { part, piece in
                let slab = WireTensor(name: "slab", shape: [piece.count], values: Array(repeating: value, count: piece.count))
                return WireCodec.encode(.gradientPush(GradientPush(
                    step: step, tokenCount: 8, lossSum: 1, tensors: [slab], computeSeconds: 0, communicateSeconds: 0,
                    part: UInt32(part), parts: UInt32(pieces.count), chunkBegin: UInt32(begin),
                    chunkEnd: UInt32(end), offset: UInt64(piece.lowerBound + offsetShift))))
            }
        }
        let blocks = StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: 2)
        let honest = blocks.enumerated().map { rank, block in
            ReductionTree.nodes(covering: block, in: 0..<chunkCount).flatMap { push($0.lowerBound, $0.upperBound) }.map { (UInt8(rank), $0) }
        }
        func encode(_ frames: [(UInt8, [UInt8])]) -> [UInt8] {
            frames.flatMap { sender, body in [sender, UInt8(body.count & 0xff), UInt8(body.count >> 8)] + body }
        }
        let heartbeat = WireCodec.encode(.heartbeat(Heartbeat(rank: 0, step: 0)))
        seeds = [
            encode(honest[0] + honest[1]),                                               // a whole step: summed, reported
            encode(honest[1] + honest[0] + honest[0]),                                   // then a repeat
            encode(push(blocks[1].lowerBound, blocks[1].upperBound).map { (0, $0) } + honest[1]),                         // another rank's chunks
            encode(push(2, 1).map { (0, $0) } + push(0, chunkCount).map { (1, $0) }),  // reversed, all chunks
            encode(push(0, blocks[0].upperBound, step: 7).map { (0, $0) } + push(0, blocks[0].upperBound, offsetShift: 1).map { (0, $0) }),
            encode(push(0, blocks[0].upperBound, value: .nan).map { (0, $0) } + [(0, heartbeat), (2, heartbeat)]),
            encode([(2, WireCodec.encode(hello(0, token: "not-the-token", ticket: Self.tickets[0]))),
                    (2, WireCodec.encode(.shardSetup(ShardSetup(runConfig: "{\"cell\":\"lstm\"}", shard: 0, shardCount: 1, step: 0,
                                                                workerCount: 2, parameters: WireTensor(name: "slab", shape: [1], values: [0]),
                                                                optimizerState: [], optimizerSteps: 0, joinToken: "guess",
                                                                vocabularySize: 3, labelCount: 0)))),
                    (1, WireCodec.encode(.error(WireErrorMessage(message: "\u{1b}[2Jworker 0 joined")))),
                    (0, WireCodec.encode(.shardCommand(ShardCommand(kind: .apply, step: 0))))]),
        ]
    }

    static func frames(_ bytes: [UInt8]) -> [(sender: UInt8, body: [UInt8])] {
        var frames: [(UInt8, [UInt8])] = []
        var index = 0
        while index + 3 <= bytes.count {
            let length = Int(bytes[index + 1]) | Int(bytes[index + 2]) << 8
            let start = index + 3
            guard start + length <= bytes.count else { break }
            frames.append((bytes[index], Array(bytes[start..<(start + length)])))
            index = start + length
        }
        return frames
    }
}
