import Recurrent
import Training
import Wire

/// The route of a sharded run (the Welcome names the shards): the worker says hello to each
/// shard with its rank and ticket, assembles the weights of a step from every shard's range,
/// and pushes each range of every node's gradient sum to the shard that owns it. The
/// coordinator then only gets each node's loss, tokens and carried state.
struct WorkerShards: ParameterRoute {
    let endpoints: [String]
    /// Shard k owns slab elements bounds[k] ..< bounds[k + 1].
    let bounds: [Int]
    let layout: ParameterLayout
    /// Where the early run of the slab starts, as the shards derive it (nil: no early part).
    let earlyFrom: Int?
    let rank: UInt32
    let rankTicket: String
    /// Shards whose weights for the awaited step arrived, and whether any said "epoch start".
    private var received = Set<Int>()
    private var resetState = false

    init(welcome: Welcome, layout: ParameterLayout, earlyFrom: Int?) throws {
        let bounds = welcome.shardBounds.map { Int(clamping: $0) }
        guard welcome.shardEndpoints.count >= 2, bounds.count == welcome.shardEndpoints.count + 1,
              bounds.first == 0, bounds.last == layout.count, zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw ClusterError.protocolViolation("welcome names \(welcome.shardEndpoints.count) shards with bounds \(welcome.shardBounds) for \(layout.count) parameters")
        }
        self.bounds = bounds
        self.layout = layout
        self.earlyFrom = earlyFrom
        endpoints = welcome.shardEndpoints
        rank = welcome.rank
        rankTicket = welcome.rankTicket
    }

    func range(_ k: Int) -> Range<Int> { bounds[k]..<bounds[k + 1] }

    /// Connects to every shard, then says hello to each with this rank's ticket.
    func open(hello: Hello) -> [ClientAction] {
        var hello = hello
        hello.rank = rank
        hello.rankTicket = rankTicket
        return [.linkShards(endpoints: endpoints, limits: .sharded(layout: layout))]
            + endpoints.indices.map { .sendToShard($0, .hello(hello)) }
            + [.log("worker \(rank): \(endpoints.count) parameter shards")]
    }

    /// Shard k's range of the step's weights; complete once every shard's arrived.
    mutating func take(_ weights: DecodedWeights, from sender: Sender,
                       into parameters: UnsafeMutableBufferPointer<Float>) throws -> WeightsTaken {
        guard case .shard(let k) = sender else {
            throw ClusterError.protocolViolation("weights from the coordinator of a sharded run")
        }
        guard weights.offset == UInt64(bounds[k]) else {
            throw ClusterError.protocolViolation("weights from shard \(k) start at element \(weights.offset), its range is \(range(k))")
        }
        do {
            try weights.tensors.copySlab(into: UnsafeMutableBufferPointer(rebasing: parameters[range(k)]))
        } catch {
            throw ClusterError.protocolViolation("weights from shard \(k) for step \(weights.step + 1) do not fit its range: \(error)")
        }
        received.insert(k)
        resetState = resetState || weights.resetState
        guard received.count == endpoints.count else { return .partial }
        defer { received = []; resetState = false }
        return .complete(resetState: resetState)
    }

    func earlyPushes(step: UInt64, slices: Range<Int>, assignment: WorkerAssignment) -> [ClientAction] {
        pushes(step: step, early: true, assignment: assignment)
    }

    func restPushes(step: UInt64, assignment: WorkerAssignment) -> [ClientAction] {
        pushes(step: step, early: false, assignment: assignment)
    }

    func coordinatorShare(engine: any GradientComputing) -> (slices: Range<Int>, part: Int, parts: Int) { (0..<0, 0, 1) }

    var isTakingWeights: Bool { !received.isEmpty }

    /// A re-issued node: every piece of it to every shard at once (its compute is over).
    func copyPushes(step: UInt64, chunks: Range<Int>, gradient: UnsafeBufferPointer<Float>,
                    engine: any GradientComputing) -> [ClientAction] {
        [true, false].flatMap { nodePushes(step: step, node: chunks, gradient: gradient, early: $0) }
    }

    /// Every node's gradient sum, each range to its shard, in the pieces of
    /// `SlabPartition.pushPieces`: with `early`, only the pieces of the early run (elements
    /// `earlyFrom...`, final while the lower layers' backward goes on), else the rest.
    private func pushes(step: UInt64, early: Bool, assignment: WorkerAssignment) -> [ClientAction] {
        assignment.engine.nodes.enumerated().flatMap { i, node in
            nodePushes(step: step, node: node, gradient: assignment.gradient(ofNode: i), early: early)
        }
    }

    /// One node's pieces to every shard: those of the early run, or the rest.
    private func nodePushes(step: UInt64, node: Range<Int>, gradient: UnsafeBufferPointer<Float>, early: Bool) -> [ClientAction] {
        var actions: [ClientAction] = []
        for k in endpoints.indices {
            let pieces = SlabPartition.pushPieces(of: range(k), earlyFrom: earlyFrom)
            for (part, piece) in pieces.enumerated() where early == (earlyFrom.map { piece.lowerBound >= $0 } ?? false) {
                actions.append(.pushToShard(k, SlabPush(step: step, chunks: node, offset: piece.lowerBound,
                                                        values: UnsafeBufferPointer(rebasing: gradient[piece]),
                                                        part: part, parts: pieces.count)))
            }
        }
        return actions
    }
}
