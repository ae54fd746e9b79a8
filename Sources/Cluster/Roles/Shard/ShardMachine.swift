import Recurrent
import Training
import Wire

/// The parameter shard's protocol as a state machine: events in, actions out, no sockets,
/// clocks or threads (`ServerDriver` runs it). States:
///
///     awaitingSetup ──ShardSetup (token, sizes checked)──▶ serving(run)
///     serving ──ShardSetup from a new coordinator (restart)──▶ serving(new run)
///     serving ──Shutdown──▶ finished;  coordinator silent, Error, bad command ──▶ failed
///
/// Within `serving`, a step goes: broadcast pending (until every rank said hello with its
/// ticket) → weights broadcast → node pushes gathered → Σg² blocks reported → Apply(norm) →
/// next step's broadcast. A stop request is served on for at most a heartbeat timeout, so the
/// coordinator can fetch the state for its last checkpoint.
struct ShardMachine: ServerRole {
    enum State {
        case awaitingSetup
        case serving(ShardRun)
    }

    let options: ShardOptions
    private(set) var state = State.awaitingSetup
    private(set) var coordinator: PeerIdentity?
    /// Worker rank → identity, from their hellos.
    private(set) var workers: [Int: PeerIdentity] = [:]
    private var stopAsked: (at: Double, stopped: StopRequest.Stopped)?
    private var actions: [ServerAction] = []

    init(options: ShardOptions) { self.options = options }

    var run: ShardRun? {
        if case .serving(let run) = state { return run }
        return nil
    }

    var heartbeat: (to: PeerIdentity, Heartbeat)? {
        coordinator.map { ($0, Heartbeat(rank: UInt32(run?.shard ?? 0), step: run?.step ?? 0)) }
    }

    var watched: [(peer: PeerIdentity, limit: Double)] {
        coordinator.map { [($0, options.heartbeatTimeout + options.reconnectTimeout)] } ?? []
    }

    func name(of peer: PeerIdentity) -> String? {
        if peer == coordinator { return "the coordinator" }
        return workers.first { $0.value == peer }.map { "worker \($0.key)" }
    }

    mutating func handle(_ event: ServerEvent, now: Double) -> [ServerAction] {
        actions = []
        do {
            try take(event, now: now)
        } catch {
            actions.append(.fail(error))
        }
        return actions
    }

    private mutating func take(_ event: ServerEvent, now: Double) throws {
        switch event {
        case .stopRequested(let stopped):
            // A signal usually reaches the whole job at once: keep serving the coordinator, which
            // fetches the state for its last checkpoint and then says Shutdown.
            guard coordinator != nil else { throw stopped }
            stopAsked = (now, stopped)
        case .tick:
            if let (at, stopped) = stopAsked, now - at > options.heartbeatTimeout { throw stopped }
        case .silent(let peer, let seconds) where peer == coordinator:
            throw ClusterError.coordinatorLost(endpoint: "of this shard", seconds: seconds, encrypted: false)
        case .silent:
            return
        case .peerGone(let peer):
            let rank = workers.first { $0.value == peer }?.key
            actions.append(.log("shard \(run?.shard ?? 0): worker \(rank.map(String.init) ?? "?") is gone or not reading; the coordinator decides whether the run goes on"))
            workers = workers.filter { $0.value != peer }
        case .received(let peer, let message):
            try receive(message, from: peer)
        }
    }

    private mutating func receive(_ message: DecodedMessage, from peer: PeerIdentity) throws {
        if case .shardSetup(let setup) = message {
            // The first coordinator, or a restarted one (`serve --resume`): a new run. A setup
            // that does not make one is refused; the shard keeps its run, or keeps waiting.
            do {
                try setUp(setup, from: peer)
            } catch ClusterError.protocolViolation(let reason) {
                actions.append(.reject(peer, reason))
            }
        } else if peer == coordinator {
            try fromCoordinator(message)
        } else if case .hello(let hello) = message, let run {
            // From a new peer, or from a worker welcomed again after it fell behind.
            admit(hello, peer: peer, run: run)
        } else if let rank = workers.first(where: { $0.value == peer })?.key {
            fromWorker(rank: rank, peer: peer, message)
        } else {
            actions.append(.reject(peer, "\(message.kind.rawValue) from a peer that is not part of this shard's run"))
        }
    }

    // MARK: Coordinator

    private mutating func setUp(_ setup: ShardSetup, from peer: PeerIdentity) throws {
        if let token = options.joinToken, !sameBytes(setup.joinToken, token) {
            actions.append(.reject(peer, "shard setup without this job's join token"))
            return
        }
        let (run, layout) = try ShardRun.make(from: setup)
        coordinator = peer
        workers = [:]
        state = .serving(run)
        let range = run.update.range
        actions += [
            .limit(DecodeLimits.sharded(layout: layout)),
            // The workers and the coordinator may connect now; nobody else needs a place.
            .members(Int(setup.workerCount) + 1),
            .log("shard \(run.shard) of \(setup.shardCount): elements \(range.lowerBound)..<\(range.upperBound) (\(range.count) values), from step \(setup.step + 1), \(setup.workerCount) worker(s)"),
            .send(.shardReport(ShardReport(kind: .ready, step: setup.step)), to: peer),
        ]
    }

    private mutating func fromCoordinator(_ message: DecodedMessage) throws {
        guard let run, let coordinator else { return }
        switch message {
        case .heartbeat:
            return
        case .shutdown(let shutdown):
            actions += [.log("shard \(run.shard): coordinator ended the run: \(shutdown.reason)"), .finish]
        case .error(let error):
            throw ClusterError.refused(error.message)
        case .shardCommand(let command):
            try execute(command, run: run, coordinator: coordinator)
        default:
            actions.append(.reject(coordinator, "unexpected \(message.kind.rawValue) from the coordinator"))
        }
    }

    private mutating func execute(_ command: ShardCommand, run: ShardRun, coordinator: PeerIdentity) throws {
        switch command.kind {
        case .broadcast:
            run.step = command.step
            run.recycle()
            run.copies.newStep()
            run.broadcastPending = command
            broadcastIfReady(run)
        case .apply:
            guard command.step == run.step, let gradient = run.summed else {
                throw ClusterError.protocolViolation("apply for step \(command.step + 1) while this shard holds step \(run.step + 1)")
            }
            _ = run.update.apply(gradient, norm: command.norm, step: Int(command.step))
            run.recycle()
            guard command.broadcastNext else { return }
            run.step = command.step + 1
            run.copies.newStep()
            run.broadcastPending = ShardCommand(kind: .broadcast, step: command.step + 1, resetState: command.resetState)
            broadcastIfReady(run)
        case .reassign:
            guard command.workerCount >= 1, command.rankTickets.count == Int(command.workerCount) else {
                throw ClusterError.protocolViolation("reassign to \(command.workerCount) workers with \(command.rankTickets.count) rank tickets")
            }
            try run.assign(workers: Int(command.workerCount), blockSizes: command.blockSizes.map { Int($0) })
            run.tickets = command.rankTickets
            run.copies.reset()
            workers = [:]
            run.step = command.step
            run.recycle()
            run.broadcastPending = ShardCommand(kind: .broadcast, step: command.step, resetState: command.resetState)
            actions += [.members(Int(command.workerCount) + 1),
                        .send(.shardReport(ShardReport(kind: .ready, step: command.step)), to: coordinator)]
        case .reissue:
            // Answered, so that the coordinator sends the helper its `Reissue` only once every
            // shard takes its pushes: the two travel on different connections.
            try run.copies.grant(command, step: run.step, nodesOfRank: run.nodesOfRank)
            actions.append(.send(.shardReport(ShardReport(kind: .granted, step: run.step)), to: coordinator))
        case .holdBack:
            try run.copies.holdBack(command, step: run.step, workerCount: run.workerCount)
        case .release:
            try run.copies.release(command, step: run.step, workerCount: run.workerCount)
            sendOwedWeights(run)
        case .sendState:
            let update = run.update
            let state = update.optimizer.stateBuffers.map { WireTensor(name: $0.name, shape: [$0.values.count], values: $0.values) }
            actions.append(.send(.shardReport(ShardReport(
                kind: .state, step: command.step,
                parameters: WireTensor(name: "slab", shape: [update.range.count], values: Array(update.parameters)),
                optimizerState: state, optimizerSteps: UInt64(update.optimizer.stepCount))), to: coordinator))
        }
    }

    // MARK: Workers

    private mutating func admit(_ hello: Hello, peer: PeerIdentity, run: ShardRun) {
        let rank = Int(hello.rank)
        if let token = options.joinToken, !sameBytes(hello.joinToken, token) {
            actions += [.reply(.error(WireErrorMessage(message: hello.joinToken.isEmpty ? "missing join token" : "wrong join token")), to: peer),
                        .reject(peer, "hello without this job's join token")]
            return
        }
        guard rank < run.workerCount else {
            actions.append(.reject(peer, "hello from rank \(rank) of a run of \(run.workerCount) worker(s)"))
            return
        }
        guard rank < run.tickets.count, sameBytes(hello.rankTicket, run.tickets[rank]) else {
            // Ranks are handed out by the coordinator with a ticket each: whoever lacks it, the
            // job's token notwithstanding, cannot take a worker's place.
            actions.append(.reject(peer, "hello for rank \(rank) without that rank's ticket"))
            return
        }
        let again = workers[rank] == peer
        workers[rank] = peer
        // The same worker saying hello again (a welcome again after it fell behind) brings
        // nothing to report: the coordinator, gathering, would only log each one.
        if !again, let coordinator {
            actions.append(.send(.shardReport(ShardReport(kind: .workerJoined, step: UInt64(rank))), to: coordinator, required: false))
        }
        broadcastIfReady(run)
        sendOwedWeights(run)
    }

    private mutating func fromWorker(rank: Int, peer: PeerIdentity, _ message: DecodedMessage) {
        guard let run, let coordinator else { return }
        switch message {
        case .heartbeat:
            return
        case .gradientPush(let push):
            do {
                guard let squares = try run.accept(push, from: rank) else { return }
                actions.append(.send(.shardReport(ShardReport(kind: .blockSquares, step: run.step, blockSquares: squares)),
                                     to: coordinator, required: false))   // a lost coordinator is judged by its silence
            } catch {
                actions.append(.reject(peer, "\(error)"))
            }
        default:
            actions.append(.reject(peer, "unexpected \(message.kind.rawValue) from worker \(rank)"))
        }
    }

    /// The pending step's weights to every worker not held back, once all of them said hello
    /// (one held back is not waited for: `sendOwedWeights` serves it; one that computed the
    /// step ahead already has them, `ShardRun.accept`). A worker that is gone comes back as
    /// `.peerGone` (the others still get the weights): whether the run goes on is the
    /// coordinator's call.
    private mutating func broadcastIfReady(_ run: ShardRun) {
        let receivers = (0..<run.workerCount).filter { !run.copies.held.contains($0) && !run.sentTo.contains($0) }
        guard let command = run.broadcastPending, receivers.allSatisfy({ workers[$0] != nil }) else { return }
        run.broadcastPending = nil
        run.broadcastSent = command
        run.sentTo.formUnion(receivers)
        // A rank held back (it fell behind) gets these weights when it is released.
        actions.append(.broadcastSlab(step: command.step, resetState: command.resetState, offset: run.update.range.lowerBound,
                                      values: UnsafeBufferPointer(run.update.parameters),
                                      to: receivers.map { workers[$0]! }))
    }

    /// The broadcast step's weights to each rank that missed them: one released after they went
    /// out, once it also said hello (release and hello come on two connections, in either
    /// order). They stay in the range until `apply`, even once the step's sum is made. Its
    /// copies may all be in already: its pushes are then dropped quietly, and the coordinator
    /// holds it back again.
    private mutating func sendOwedWeights(_ run: ShardRun) {
        guard run.broadcastPending == nil, let sent = run.broadcastSent else { return }
        let owed = (0..<run.workerCount).filter { !run.copies.held.contains($0) && !run.sentTo.contains($0) && workers[$0] != nil }
        guard !owed.isEmpty else { return }
        run.sentTo.formUnion(owed)
        actions.append(.broadcastSlab(step: sent.step, resetState: sent.resetState, offset: run.update.range.lowerBound,
                                      values: UnsafeBufferPointer(run.update.parameters), to: owed.map { workers[$0]! }))
    }
}
