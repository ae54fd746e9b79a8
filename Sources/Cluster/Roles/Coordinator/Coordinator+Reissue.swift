import Training
import Wire

/// `--balance on` within a step: a late worker's nodes are re-issued to idle workers
/// (`ReissuePolicy`), with their streams' carried state as of the start of the step; the first
/// complete copy of each node counts (`CoordinatorMachine`). With parameter shards the shards
/// are told first (`CoordinatorStore.reissue`), and the helper gets its `Reissue` once each has
/// answered that it takes the helper's pieces of that node as the owner's; they hold back the
/// weights of a worker that fell behind (`CoordinatorStore.holdBack`) until it is welcomed
/// again (`CoordinatorStore.release`), as this process does with one server.
extension Coordinator {
    /// Whether late nodes are re-issued within a step: with `--balance on`, with one parameter
    /// server or with shards alike.
    var reissuesLateNodes: Bool { options.balance }

    /// While gathering `step`: sends the nodes the policy picks, one line each.
    func reissueLateNodes(step: Int, state: CarriedState) throws {
        let now = monotonicSeconds(), started = machine.gatherStarted
        let workers = machine.workers
        let pending = workers.filter { !$0.isComplete }
        guard !pending.isEmpty, pending.count < workers.count else { return }
        let finished = workers.filter(\.isComplete)
        let idle = finished.filter { !machine.isBusy($0.identity) }.sorted { $0.arrival < $1.arrival }
        guard !idle.isEmpty else { return }
        let owners = pending.map { peer in
            ReissuePolicy.Owner(identity: peer.identity, chunks: peer.chunks.count,
                                openNodes: zip(peer.nodes, peer.pushes).filter { !$0.1.isComplete && machine.reissued[$0.0] == nil }.map(\.0),
                                secondsPerChunk: balancer.secondsPerChunk(of: peer.identity),
                                startedAt: heldBack.contains(peer.identity) ? nil : resumedAt[peer.identity].map { $0 - started } ?? 0)
        }
        let decisions = reissuePolicy.decisions(
            elapsed: now - started, owners: owners,
            finishedSecondsPerChunk: finished.map { ($0.arrival - started) / Double($0.chunks.count) },
            idle: idle.map { ReissuePolicy.Helper(identity: $0.identity, secondsPerChunk: balancer.secondsPerChunk(of: $0.identity)) })
        for decision in decisions {
            guard let owner = machine.member(decision.owner), let helper = machine.member(decision.helper) else { continue }
            // The parameter servers first: the helper's pushes must find them ready.
            try parameters.reissue(decision.node, owner: owner.rank, helper: helper.rank, step: step)
            reissuesGranted += 1
            waitingReissues.append((decision.helper, Reissue(
                step: UInt64(step), chunkBegin: UInt32(decision.node.lowerBound), chunkEnd: UInt32(decision.node.upperBound),
                state: state.wireTensors(streams: plan.streams(ofChunks: decision.node)))))
            machine.reissue(decision.node, of: decision.owner, to: decision.helper)
            stepBalancing.reissuedChunks += decision.node.count
            log(Self.reissueLine(step: step, decision, workers: workers, elapsed: now - started))
        }
        sendGrantedReissues()
    }

    /// The `Reissue`s whose grant every parameter server took, in the order granted (the slab:
    /// at once). Grant and `Reissue` travel on two connections, so a helper's pushes could
    /// otherwise reach a shard before the grant does, and be refused.
    func sendGrantedReissues() {
        let taken = parameters.reissuesTaken
        while let (helper, reissue) = waitingReissues.first, reissuesGranted - waitingReissues.count < taken {
            waitingReissues.removeFirst()
            // A copy is optional: a helper that does not take it now is simply not used (the
            // owner's push still counts).
            _ = try? messenger.send(.reissue(reissue), to: helper, waiting: false)
        }
    }

    /// Step `step` is gathered and `behind` fell behind (a copy completed a node of theirs):
    /// the parameter servers hold their next weights back (shards broadcast by themselves).
    func holdBack(_ behind: [PeerIdentity], step: Int) throws {
        for identity in behind {
            guard let peer = machine.member(identity) else { continue }
            try parameters.holdBack(rank: peer.rank, step: step)
        }
    }

    /// Before `request`'s weights go out: a worker still computing an older step (it fell
    /// behind) gets no weights, so that none pile up at it; it is held back. One that caught up
    /// meanwhile gets a welcome with its streams' state at the start of this step, as its own
    /// state is of an older one (with shards, each shard sends it the step's weights once it
    /// has the release and the worker's hello). The weights go to every worker not held back.
    func weightsRecipients(step: Int, state: CarriedState) throws -> [PeerIdentity] {
        resumedAt = [:]
        for peer in machine.workers where machine.isBehind(peer.identity) { heldBack.insert(peer.identity) }
        try welcomeCaughtUp(step: step, state: state)
        return machine.workers.map(\.identity).filter { !heldBack.contains($0) }
    }

    /// While gathering `request.step`: workers held back that caught up are welcomed with the
    /// step's state and sent its weights (they start late; their nodes may be re-issued).
    func resumeCaughtUp(_ request: StepRequest, state: CarriedState) throws {
        do {
            let caughtUp = try welcomeCaughtUp(step: request.step, state: state)
            guard !caughtUp.isEmpty else { return }
            try parameters.broadcast(request, layout: plan.layout, to: caughtUp, messenger: messenger)
            for peer in caughtUp { resumedAt[peer] = monotonicSeconds() }
        } catch let error as TransportError {
            throw machine.workers.lost(error, step: request.step)
        }
    }

    /// Welcomes the held-back workers no longer behind at `step` (rank and streams unchanged,
    /// their state as of `step`); returns them.
    @discardableResult
    private func welcomeCaughtUp(step: Int, state: CarriedState) throws -> [PeerIdentity] {
        let caughtUp = machine.workers.filter { heldBack.contains($0.identity) && !machine.isBehind($0.identity) }
        for peer in caughtUp {
            try parameters.release(rank: peer.rank, step: step)
            let placement = placements.indices.contains(peer.rank) ? placements[peer.rank] : Placement()
            try messenger.send(.welcome(welcome(peer, step: step, state: state, placement: placement, workerCount: machine.workers.count)),
                               to: peer.identity)
            heldBack.remove(peer.identity)
        }
        return caughtUp.map(\.identity)
    }

    /// "re-issued chunks 6..<8 of step 21 from worker 3 (…) to worker 0 (…): no push after 152 ms"
    static func reissueLine(step: Int, _ decision: ReissuePolicy.Decision, workers: [WorkerPeer], elapsed: Double) -> String {
        let name = { (identity: PeerIdentity) in workers.first { $0.identity == identity }?.name ?? "a worker" }
        return "re-issued chunks \(decision.node.lowerBound)..<\(decision.node.upperBound) of step \(step + 1) from \(name(decision.owner)) "
            + "to \(name(decision.helper)): no push after \(StragglerWatch.milliseconds(elapsed)) ms"
    }
}
