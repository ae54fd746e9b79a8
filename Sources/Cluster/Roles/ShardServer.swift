import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur shard`.
public struct ShardOptions: Sendable {
    /// The coordinator silent for this long ends the shard.
    public var heartbeatTimeout: Double = 30
    /// Without CurveZMQ: the job's secret, which the coordinator's setup and every worker's
    /// hello must carry (nil: CurveZMQ's allow-list admits peers).
    public var joinToken: String?
    /// After losing its coordinator, how long to wait for a new setup (a restarted
    /// `recur serve --resume`) before exiting.
    public var reconnectTimeout: Double = 60

    public init() {}

    var heartbeatInterval: Double { HeartbeatSchedule.interval(forTimeout: heartbeatTimeout) }
}

/// One parameter server of a sharded run (`--shards S`, ps-lite's server role). It owns one
/// range of the parameter slab (`SlabPartition`) with its optimizer state. The coordinator
/// connects first and sends `ShardSetup`; the W workers connect and say hello with their rank.
/// Then for every step:
///
///     broadcast the range's weights → gather each worker's node sums for the range → add
///     them in the fixed reduction tree → ÷ tokens → Σg² of each norm block to the
///     coordinator → its global norm back → clip, optimizer step → broadcast the next weights
///
/// The arithmetic is `RangeUpdate`'s, element by element the same as in-process training.
public final class ShardServer {
    public let options: ShardOptions
    public let stop = StopRequest()
    private let log: (String) -> Void
    private let messenger: ServerMessenger
    private var coordinator: PeerIdentity?
    private var run: Run?
    /// Worker rank → identity, from their hellos.
    private var workers: [Int: PeerIdentity] = [:]
    private var lastHeardFromCoordinator = 0.0
    private lazy var heartbeats = HeartbeatSchedule(timeout: options.heartbeatTimeout)

    /// What the setup fixed.
    private final class Run {
        let shard: Int
        let update: RangeUpdate
        var workerCount: Int { didSet { nodesOfRank = Self.nodes(chunkCount: chunkCount, workers: workerCount) } }
        /// The secret of each rank of the current assignment (`ShardCommand.rankTickets`): a
        /// hello for rank r is admitted only with ticket r.
        var tickets: [String] = []
        let chunkCount: Int
        /// The reduction-tree nodes each rank's pushes may name: its block of the assignment
        /// (`StreamLayout.contiguousBlocks`, as the coordinator assigns) cut into tree nodes.
        private(set) var nodesOfRank: [[Range<Int>]]
        let tokensPerStep: Int
        /// The pieces of the range a node's push comes in (`SlabPartition.pushPieces`).
        let pieces: [Range<Int>]
        /// The step being gathered (the last broadcast), and its node sums so far: whole, and
        /// still missing a piece (with the parts received).
        var step: UInt64
        var broadcastPending: ShardCommand?
        var nodes: [(chunks: Range<Int>, values: UnsafeMutableBufferPointer<Float>)] = []
        var partial: [(chunks: Range<Int>, values: UnsafeMutableBufferPointer<Float>, received: Set<Int>)] = []
        /// The summed, prepared gradient of `step` once every node arrived.
        var summed: UnsafeMutableBufferPointer<Float>?
        var spare: [UnsafeMutableBufferPointer<Float>] = []

        init(shard: Int, update: RangeUpdate, workerCount: Int, chunkCount: Int, tokensPerStep: Int, earlyFrom: Int?, step: UInt64) {
            self.shard = shard
            pieces = SlabPartition.pushPieces(of: update.range, earlyFrom: earlyFrom)
            self.update = update
            self.workerCount = workerCount
            self.chunkCount = chunkCount
            nodesOfRank = Self.nodes(chunkCount: chunkCount, workers: workerCount)
            self.tokensPerStep = tokensPerStep
            self.step = step
        }

        deinit { (nodes.map(\.values) + partial.map(\.values) + spare).forEach { $0.deallocate() } }

        static func nodes(chunkCount: Int, workers: Int) -> [[Range<Int>]] {
            StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: workers).map {
                ReductionTree.nodes(covering: $0, in: 0..<chunkCount)
            }
        }

        func buffer() -> UnsafeMutableBufferPointer<Float> {
            spare.popLast() ?? .allocate(capacity: update.range.count)
        }

        func recycle() {
            spare += nodes.map(\.values) + partial.map(\.values)
            nodes = []
            partial = []
            summed = nil
        }
    }

    public init(options: ShardOptions, transport: ServerTransport, log: @escaping (String) -> Void) {
        self.options = options
        self.log = log
        // Until the setup names the model, the standard bound (1 GiB) applies.
        messenger = ServerMessenger(transport: transport, limits: .standard, log: log)
        messenger.describe = { [unowned self] identity in
            if identity == coordinator { return "the coordinator" }
            return workers.first { $0.value == identity }.map { "worker \($0.key)" } ?? ServerMessenger.anonymous(identity)
        }
    }

    public var endpoint: String { messenger.transport.endpoint }

    /// Serves until the coordinator says the run is over (returns) or goes silent (throws).
    public func serve() throws {
        defer {
            messenger.rejections.flush()
            messenger.transport.close()
        }
        log("shard on \(endpoint): waiting for the coordinator")
        var stopAsked: Double?
        while true {
            // A signal usually reaches the whole job at once: the shard keeps serving its
            // coordinator, which fetches the state for its last checkpoint and then says
            // Shutdown, for at most a heartbeat timeout.
            if let stopped = stop.pending {
                let asked = stopAsked ?? monotonicSeconds()
                stopAsked = asked
                if coordinator == nil || monotonicSeconds() - asked > options.heartbeatTimeout { throw stopped }
            }
            try sendHeartbeatIfDue()
            let silence = monotonicSeconds() - lastHeardFromCoordinator
            if coordinator != nil, silence > options.heartbeatTimeout + options.reconnectTimeout {
                throw ClusterError.coordinatorLost(endpoint: "of this shard", seconds: silence, encrypted: false)
            }
            guard let (identity, message) = try messenger.receive(timeout: 0.2) else { continue }
            if identity == coordinator, !(message.kind == .shardSetup) {
                lastHeardFromCoordinator = monotonicSeconds()
                if try !handleCoordinator(message) { return }
            } else if case .shardSetup(let setup) = message {
                // The first coordinator, or a restarted one (`serve --resume`): a new run. A
                // setup that does not make one is refused; the shard keeps waiting.
                do {
                    try setUp(setup, from: identity)
                } catch ClusterError.protocolViolation(let reason) {
                    messenger.reject(from: identity, reason)
                }
            } else if let rank = workers.first(where: { $0.value == identity })?.key {
                try handleWorker(rank: rank, message)
            } else if case .hello(let hello) = message, let run {
                admit(hello, identity: identity, run: run)
            } else {
                messenger.reject(from: identity, "\(message.kind.rawValue) from a peer that is not part of this shard's run")
            }
        }
    }

    // MARK: Coordinator

    private func setUp(_ setup: ShardSetup, from identity: PeerIdentity) throws {
        if let token = options.joinToken, !sameBytes(setup.joinToken, token) {
            messenger.reject(from: identity, "shard setup without this job's join token")
            return
        }
        let config: TrainingConfig
        do { config = try TrainingConfig.fromJSON(setup.runConfig) } catch {
            throw ClusterError.protocolViolation("shard setup with an unreadable run config: \(error)")
        }
        // Sizes before anything is built from them: V of Unicode's scalars at most, and a
        // label count exactly when the run is a classifier (bounded as checkpoints bound it).
        guard setup.vocabularySize >= 1, setup.vocabularySize <= 0x110000,
              (setup.labelCount > 0) == config.isClassifier, setup.labelCount <= 1 << 20, (try? config.validate()) != nil else {
            throw ClusterError.protocolViolation("shard setup with vocabulary size \(setup.vocabularySize) and \(setup.labelCount) labels for a \(config.isClassifier ? "classifier" : "language model")")
        }
        let labels = setup.labelCount > 0 ? Int(setup.labelCount) : nil
        let layout = ParameterLayout(config.model(vocabularySize: Int(setup.vocabularySize), labelCount: labels))
        let count = Int(setup.shardCount), shard = Int(setup.shard)
        guard count >= 1, shard < count, count <= SlabPartition.maximumShards(layout) else {
            throw ClusterError.protocolViolation("shard setup for shard \(shard) of \(count)")
        }
        let partition = SlabPartition(layout: layout, shards: count)
        let range = partition.shards[shard]
        guard setup.parameters.values.count == range.count, setup.workerCount >= 1 else {
            throw ClusterError.protocolViolation("shard setup with \(setup.parameters.values.count) weights for a range of \(range.count)")
        }
        let update = RangeUpdate(range: range, blocks: Array(partition.blocks[partition.shardBlocks[shard]]),
                                 optimizer: config.optimizer, schedule: config.schedule, clip: config.clip,
                                 initial: setup.parameters.values[...])
        do {
            try update.optimizer.restore(stepCount: Int(setup.optimizerSteps),
                                         buffers: setup.optimizerState.map { ($0.name, $0.values) })
        } catch {
            throw ClusterError.protocolViolation("shard setup: optimizer state: \(error)")
        }
        coordinator = identity
        workers = [:]
        lastHeardFromCoordinator = monotonicSeconds()
        messenger.limits = DecodeLimits.sharded(layout: layout)
        run = Run(shard: shard, update: update, workerCount: Int(setup.workerCount),
                  chunkCount: config.streams / config.chunkStreams, tokensPerStep: config.predictionsPerStep,
                  earlyFrom: config.earlyElements(of: layout),
                  step: setup.step)
        log("shard \(shard) of \(count): elements \(range.lowerBound)..<\(range.upperBound) (\(range.count) values), from step \(setup.step + 1), \(setup.workerCount) worker(s)")
        try messenger.send(.shardReport(ShardReport(kind: .ready, step: setup.step)), to: identity)
    }

    /// Returns false when the run is over.
    private func handleCoordinator(_ message: DecodedMessage) throws -> Bool {
        guard let run else { return true }
        switch message {
        case .heartbeat:
            return true
        case .shutdown(let shutdown):
            log("shard \(run.shard): coordinator ended the run: \(shutdown.reason)")
            return false
        case .error(let error):
            throw ClusterError.refused(error.message)
        case .shardCommand(let command):
            switch command.kind {
            case .broadcast:
                run.step = command.step
                run.recycle()
                run.broadcastPending = command
                try broadcastIfReady()
            case .apply:
                guard command.step == run.step, let gradient = run.summed else {
                    throw ClusterError.protocolViolation("apply for step \(command.step + 1) while this shard holds step \(run.step + 1)")
                }
                _ = run.update.apply(gradient, norm: command.norm, step: Int(command.step))
                run.recycle()
                if command.broadcastNext {
                    run.step = command.step + 1
                    run.broadcastPending = ShardCommand(kind: .broadcast, step: command.step + 1, resetState: command.resetState)
                    try broadcastIfReady()
                }
            case .reassign:
                guard command.workerCount >= 1, command.rankTickets.count == Int(command.workerCount) else {
                    throw ClusterError.protocolViolation("reassign to \(command.workerCount) workers with \(command.rankTickets.count) rank tickets")
                }
                run.workerCount = Int(command.workerCount)
                run.tickets = command.rankTickets
                workers = [:]
                run.step = command.step
                run.recycle()
                run.broadcastPending = ShardCommand(kind: .broadcast, step: command.step, resetState: command.resetState)
                try messenger.send(.shardReport(ShardReport(kind: .ready, step: command.step)), to: coordinator!)
            case .sendState:
                let update = run.update
                let state = update.optimizer.stateBuffers.map {
                    WireTensor(name: $0.name, shape: [$0.values.count], values: $0.values)
                }
                try messenger.send(.shardReport(ShardReport(
                    kind: .state, step: command.step,
                    parameters: WireTensor(name: "slab", shape: [update.range.count], values: Array(update.parameters)),
                    optimizerState: state, optimizerSteps: UInt64(update.optimizer.stepCount))), to: coordinator!)
            }
            return true
        default:
            messenger.reject(from: coordinator!, "unexpected \(message.kind.rawValue) from the coordinator")
            return true
        }
    }

    // MARK: Workers

    private func admit(_ hello: Hello, identity: PeerIdentity, run: Run) {
        let rank = Int(hello.rank)
        if let token = options.joinToken, !sameBytes(hello.joinToken, token) {
            messenger.reply(.error(WireErrorMessage(message: hello.joinToken.isEmpty ? "missing join token" : "wrong join token")), to: identity)
            messenger.reject(from: identity, "hello without this job's join token")
            return
        }
        guard rank < run.workerCount else {
            messenger.reject(from: identity, "hello from rank \(rank) of a run of \(run.workerCount) worker(s)")
            return
        }
        guard rank < run.tickets.count, sameBytes(hello.rankTicket, run.tickets[rank]) else {
            // Ranks are handed out by the coordinator with a ticket each: whoever lacks it,
            // the job's token notwithstanding, cannot take a worker's place.
            messenger.reject(from: identity, "hello for rank \(rank) without that rank's ticket")
            return
        }
        workers[rank] = identity
        try? messenger.send(.shardReport(ShardReport(kind: .workerJoined, step: UInt64(rank))), to: coordinator!)
        do { try broadcastIfReady() } catch { log("shard \(run.shard): \(error)") }
    }

    private func handleWorker(rank: Int, _ message: DecodedMessage) throws {
        guard let run else { return }
        switch message {
        case .heartbeat:
            return
        case .gradientPush(let push):
            do {
                try accept(push, from: rank, run: run)
            } catch {
                messenger.reject(from: workers[rank]!, "\(error)")
            }
        default:
            messenger.reject(from: workers[rank]!, "unexpected \(message.kind.rawValue) from worker \(rank)")
        }
    }

    /// One piece of one node's sum for this range (`SlabPartition.pushPieces`: the early run
    /// while backward goes on, then the rest): checked and copied; once a node has every piece
    /// and the nodes tile every chunk, they are added in the fixed tree, divided by the tokens
    /// and reported as block sums of squares.
    private func accept(_ push: DecodedGradientPush, from rank: Int, run: Run) throws {
        guard push.step == run.step, run.broadcastPending == nil else {
            throw PushRejection.wrongStep(.unexpectedStep(kind: .gradientPush, received: push.step, expected: run.step))
        }
        guard run.summed == nil else {   // every node of the step is in: this is a repeat
            throw PushRejection.duplicatePart(part: push.part, parts: push.parts, step: push.step)
        }
        // Only a node of the sender's own block: the nodes of different ranks never overlap,
        // so one worker can neither take another's chunks nor crash the shard with its numbers.
        guard let chunks = push.chunks, run.nodesOfRank[rank].contains(chunks) else {
            throw PushRejection.notItsChunks(begin: push.chunkBegin, end: push.chunkEnd)
        }
        guard !run.nodes.contains(where: { $0.chunks == chunks }) else {
            throw PushRejection.duplicatePart(part: push.part, parts: push.parts, step: push.step)
        }
        let parts = max(1, Int(push.parts)), part = Int(push.part)   // parts 0 is read as 1
        guard parts == run.pieces.count, part < parts else {
            throw PushRejection.badState("part \(push.part) of \(push.parts): this shard takes each node's gradient in \(run.pieces.count) piece(s)")
        }
        let piece = run.pieces[part], range = run.update.range
        guard push.offset == UInt64(piece.lowerBound) else {
            throw PushRejection.badState("gradient for elements from \(push.offset), part \(part) of this shard's range \(range.lowerBound)..<\(range.upperBound) starts at \(piece.lowerBound)")
        }
        let index = run.partial.firstIndex { $0.chunks == chunks } ?? {
            run.partial.append((chunks, run.buffer(), []))
            return run.partial.count - 1
        }()
        guard !run.partial[index].received.contains(part) else {
            throw PushRejection.duplicatePart(part: push.part, parts: push.parts, step: push.step)
        }
        let values = run.partial[index].values
        let target = UnsafeMutableBufferPointer(rebasing: values[(piece.lowerBound - range.lowerBound)..<(piece.upperBound - range.lowerBound)])
        func drop(_ rejection: PushRejection) -> PushRejection {
            if run.partial[index].received.isEmpty { run.spare.append(run.partial.remove(at: index).values) }
            return rejection
        }
        do {
            try push.tensors.copySlab(into: target)
        } catch let error as WireError {
            throw drop(.tensors(error))
        }
        guard target.isEmpty || allFinite(target.baseAddress!, count: target.count) else {
            throw drop(.gradientNotFinite(tensor: "slab"))
        }
        run.partial[index].received.insert(part)
        guard run.partial[index].received.count == parts else { return }
        run.partial.remove(at: index)
        run.nodes.append((chunks, values))
        guard run.nodes.map(\.chunks.count).reduce(0, +) == run.chunkCount else { return }
        run.nodes.sort { $0.chunks.lowerBound < $1.chunks.lowerBound }
        let tree = ReductionTree(leaves: run.nodes.map(\.chunks), over: 0..<run.chunkCount)
        tree.sum(run.nodes.map { $0.values.baseAddress! }, count: values.count, threads: 1)
        let summed = run.nodes[0].values
        run.summed = summed
        let squares = run.update.prepare(summed, tokenCount: run.tokensPerStep)
        try messenger.send(.shardReport(ShardReport(kind: .blockSquares, step: run.step, blockSquares: squares)), to: coordinator!)
    }

    /// Sends the pending step's weights to every worker. A worker that is gone is dropped
    /// (the others still get the weights): whether the run goes on is the coordinator's call.
    private func broadcastIfReady() throws {
        guard let run, let command = run.broadcastPending, workers.count == run.workerCount else { return }
        run.broadcastPending = nil
        var peers = (0..<run.workerCount).map { workers[$0]! }
        while !peers.isEmpty {
            do {
                try messenger.broadcastSlab(step: command.step, resetState: command.resetState, offset: run.update.range.lowerBound,
                                            values: UnsafeBufferPointer(run.update.parameters), to: peers)
                return
            } catch TransportError.peerGone(let gone), TransportError.sendTimedOut(let gone, _) {
                let rank = workers.first { $0.value == gone }?.key
                log("shard \(run.shard): worker \(rank.map(String.init) ?? "?") is gone or not reading; the coordinator decides whether the run goes on")
                workers = workers.filter { $0.value != gone }
                guard let index = peers.firstIndex(of: gone) else { return }
                peers = Array(peers[(index + 1)...])   // those before it have their copy
            }
        }
    }

    private func sendHeartbeatIfDue() throws {
        guard let coordinator, heartbeats.isDue() else { return }
        try? messenger.send(.heartbeat(Heartbeat(rank: UInt32(run?.shard ?? 0), step: run?.step ?? 0)), to: coordinator, waiting: false)
    }
}

extension DecodeLimits {
    /// A sharded run's bound: a range may hold the whole slab (S = 1 … P), and a setup or state
    /// report carries the range's weights and up to two optimizer buffers.
    static func sharded(layout: ParameterLayout, extraValues: Int = 0) -> DecodeLimits {
        DecodeLimits(maxMessageBytes: (3 * layout.count + extraValues) * MemoryLayout<Float>.size + (1 << 16),
                     maxTensorElements: max(layout.count, extraValues, 1))
    }
}
