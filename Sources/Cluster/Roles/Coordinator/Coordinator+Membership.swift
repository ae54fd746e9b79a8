import Training
import Wire

/// Who computes which chunks: the assignment after the join, and again whenever a worker is
/// lost and enough remain (`CoordinatorOptions.minWorkers`) or joined. Any contiguous split of
/// the chunks gives the same sum (workers push one sum per reduction-tree node), so a
/// reassigned step is bit-identical to one that never lost a worker.
extension Coordinator {
    /// Splits the chunks over the joined workers in join order, in blocks of `sizes` chunks
    /// (nil: equal blocks), and welcomes each at `step` with its streams and their carried
    /// state (L, n, H) as of the start of `step`.
    func assign(step: Int, state: CarriedState, sizes: [Int]? = nil) throws {
        let joined = machine.joined
        let blocks = sizes.map(StreamLayout.contiguousBlocks(sizes:)) ?? StreamLayout.contiguousBlocks(of: 0..<plan.chunkCount, parts: joined.count)
        precondition(blocks.count == joined.count && blocks.last?.upperBound == plan.chunkCount, "blocks must cover the chunks")
        let workers = zip(joined.indices, blocks).map { rank, block in
            WorkerPeer(identity: joined[rank].identity, rank: rank, hello: joined[rank].hello, chunks: block, plan: plan,
                       gradientAtShards: !parameters.gradientComesHere)
        }
        machine.assign(workers, step: step, now: monotonicSeconds())
        balancer.assigned(members: workers.map(\.identity))
        // Every leaf is a node of the tree: the sum is bit-identical for any worker count.
        tree = ReductionTree(leaves: workers.flatMap(\.nodes), over: 0..<plan.chunkCount)
        placements = try parameters.assign(blockSizes: workers.map(\.chunks.count), step: step,
                                           resetState: plan.position(globalStep: step).stepInEpoch == 0, stop: stop)
        // A worker still computing a step it fell behind on stays held back: its welcome (of
        // this assignment) comes when it caught up; the shards send it no weights till then.
        heldBack = Set(workers.filter { machine.isBehind($0.identity) }.map(\.identity))
        for peer in workers where heldBack.contains(peer.identity) { try parameters.holdBack(rank: peer.rank, step: step) }
        for peer in workers where !heldBack.contains(peer.identity) {
            let welcome = welcome(peer, step: step, state: state, placement: placements[peer.rank], workerCount: workers.count)
            do {
                try messenger.send(.welcome(welcome), to: peer.identity)
            } catch let error as TransportError {
                throw workers.lost(error, step: step)
            }
        }
        try awaitRanks(step: step)
    }

    /// `peer`'s welcome at `step`: its rank and streams with their carried state as of `step`,
    /// and where the parameters are.
    func welcome(_ peer: WorkerPeer, step: Int, state: CarriedState, placement: Placement, workerCount: Int) -> Welcome {
        Welcome(rank: UInt32(peer.rank), workerCount: UInt32(workerCount), runConfig: plan.config.canonicalJSON(),
                streamBegin: UInt32(peer.streams.lowerBound), streamEnd: UInt32(peer.streams.upperBound),
                step: UInt64(step), state: state.wireTensors(streams: peer.streams),
                shardEndpoints: placement.endpoints, shardBounds: placement.bounds, rankTicket: placement.ticket)
    }

    /// Every worker welcomed must reach every parameter server within the heartbeat timeout
    /// (with shards: each shard reports each hello; one held back says hello when it is
    /// welcomed later). One that does not is refused, and the run ends naming the worker and
    /// the server: a step could never complete without it.
    func awaitRanks(step: Int) throws {
        let welcomed = machine.workers.filter { !heldBack.contains($0.identity) }.map(\.rank)
        let missing = try parameters.awaitRanks(welcomed, step: step, timeout: options.heartbeatTimeout) {
            try Self.throwIfLost(try sendHeartbeatsIfDue(step: step))
            while let (identity, message) = try messenger.receive(timeout: 0) {
                try Self.throwIfLost(try feed(.received(identity, message)))
            }
        }
        guard let (rank, server) = missing else { return }
        let peer = machine.workers[rank], seconds = ClusterError.format(options.heartbeatTimeout)
        try? messenger.send(.error(WireErrorMessage(message: "this worker did not reach parameter \(server) within \(seconds) s")), to: peer.identity)
        throw ClusterError.workerFailed("\(peer.name) did not reach parameter \(server) within \(seconds) s and was refused: every worker must be able to connect to every shard endpoint")
    }

    /// Drops a lost worker and gives its chunks to the others, or ends the run (with the
    /// error naming the worker) when fewer than `minWorkers` would remain.
    func continueWithout(_ lost: WorkerLost, step: Int, state: CarriedState) throws {
        guard machine.isJoined(lost.identity) else { return }
        guard machine.joined.count - 1 >= options.requiredWorkers else { throw lost.error }
        _ = machine.remove(lost.identity)
        log("\(lost.error); continuing with \(machine.joined.count) worker(s) (at least \(options.requiredWorkers) required): step \(step + 1) is computed again")
        do {
            try assign(step: step, state: state)
        } catch let next as WorkerLost {
            try continueWithout(next, step: step, state: state)
        }
    }

    /// A loss found between steps: kept for the next step when the run can go on without the
    /// worker, else the run ends now.
    func deferLoss(_ lost: WorkerLost) throws {
        guard machine.joined.count - 1 - lostBetweenSteps.count >= options.requiredWorkers else { throw lost.error }
        if !lostBetweenSteps.contains(where: { $0.identity == lost.identity }) { lostBetweenSteps.append(lost) }
    }
}
