import Training
import Wire

/// Who computes which chunks: the assignment after the join, and again whenever a worker is
/// lost and enough remain (`CoordinatorOptions.minWorkers`). Any contiguous split of the chunks
/// gives the same sum (workers push one sum per reduction-tree node), so a reassigned step is
/// bit-identical to one that never lost a worker.
extension Coordinator {
    /// Splits the chunks over the joined workers in join order and welcomes each at `step` with
    /// its streams and their carried state (L, n, H) as of the start of `step`.
    func assign(step: Int, state: CarriedState) throws {
        heldPushes = []   // pushes of the old assignment: the step is computed again
        let blocks = StreamLayout.contiguousBlocks(of: 0..<plan.chunkCount, parts: joined.count)
        workers = zip(joined.indices, blocks).map { rank, block in
            WorkerPeer(identity: joined[rank].identity, rank: rank, hello: joined[rank].hello, chunks: block, plan: plan,
                       gradientAtShards: shards != nil)
        }
        // Every leaf is a node of the tree: the sum is bit-identical for any worker count.
        tree = ReductionTree(leaves: workers.flatMap(\.nodes), over: 0..<plan.chunkCount)
        // Shards drop what they gathered for this step and broadcast its weights again once
        // the workers of this assignment said hello, each with its rank's ticket.
        let tickets = shards == nil ? [] : workers.map { _ in JoinSecret.make() }
        try shards?.reassign(tickets: tickets, step: step,
                             resetState: plan.position(globalStep: step).stepInEpoch == 0, stop: stop)
        for peer in workers {
            let welcome = Welcome(rank: UInt32(peer.rank), workerCount: UInt32(workers.count),
                                  runConfig: plan.config.canonicalJSON(),
                                  streamBegin: UInt32(peer.streams.lowerBound), streamEnd: UInt32(peer.streams.upperBound),
                                  step: UInt64(step), state: state.wireTensors(streams: peer.streams),
                                  shardEndpoints: shards?.connection.endpoints ?? [], shardBounds: shards?.bounds ?? [],
                                  rankTicket: tickets.isEmpty ? "" : tickets[peer.rank])
            do {
                try messenger.send(.welcome(welcome), to: peer.identity)
            } catch let error as TransportError {
                throw workers.lost(error, step: step)
            }
        }
        try awaitShardHellos(step: step)
    }

    /// Sharded: every worker must reach every shard (each shard reports each hello) within the
    /// heartbeat timeout. One that does not is refused, and the run ends naming the worker and
    /// the shard: a step could never complete without it.
    func awaitShardHellos(step: Int) throws {
        guard let shards else { return }
        var seen = Array(repeating: Set<Int>(), count: shards.count)
        let deadline = monotonicSeconds() + options.heartbeatTimeout
        while seen.contains(where: { $0.count < workers.count }) {
            try sendHeartbeatsIfDue(step: step)
            for (k, message) in try shards.poll() {
                guard case .shardReport(let report) = message else { continue }
                if report.kind == .workerJoined {
                    seen[k].insert(Int(report.step))
                } else if report.kind == .blockSquares, report.step == UInt64(step) {
                    // A shard that has every push of `step` reports its norm blocks, maybe before
                    // another shard's hello reports arrive here: kept for the gather.
                    shards.hold(k, message)
                }
            }
            while let (identity, message) = try messenger.receive(timeout: 0) {
                if let peer = workers.first(where: { $0.identity == identity }) {
                    peer.lastSeen = monotonicSeconds()
                    // A worker has every shard's weights as soon as the last hello reached the
                    // shards, so its push for `step` may arrive before their reports do: kept for
                    // the gather (dropped, the step waited for it forever).
                    if case .gradientPush = message, heldPushes.count < maximumHeldPushes { heldPushes.append((identity, message)) }
                } else {
                    admitOrReject(identity, message, step: step)
                }
            }
            if monotonicSeconds() > deadline, let k = seen.indices.first(where: { seen[$0].count < workers.count }),
               let peer = workers.first(where: { !seen[k].contains($0.rank) }) {
                let seconds = ClusterError.format(options.heartbeatTimeout)
                try? messenger.send(.error(WireErrorMessage(message: "this worker did not reach parameter \(shards.name(k)) within \(seconds) s")), to: peer.identity)
                throw ClusterError.workerFailed("\(peer.name) did not reach parameter \(shards.name(k)) within \(seconds) s and was refused: every worker must be able to connect to every shard endpoint")
            }
            try waitForInput([messenger.transport] + shards.transports, timeout: 0.05)
        }
    }

    /// Drops a lost worker and gives its chunks to the others, or ends the run (with the
    /// error naming the worker) when fewer than `minWorkers` would remain.
    func continueWithout(_ lost: WorkerLost, step: Int, state: CarriedState) throws {
        guard joined.contains(where: { $0.identity == lost.identity }) else { return }
        guard joined.count - 1 >= options.requiredWorkers else { throw lost.error }
        joined.removeAll { $0.identity == lost.identity }
        log("\(lost.error); continuing with \(joined.count) worker(s) (at least \(options.requiredWorkers) required): step \(step + 1) is computed again")
        do {
            try assign(step: step, state: state)
        } catch let next as WorkerLost {
            try continueWithout(next, step: step, state: state)
        }
    }

    /// A message from a process that is not one of the assigned workers. A joined worker
    /// waiting for its first step only keeps its place; in an elastic job (`minWorkers` set) a
    /// hello that passes the checks joins at the next step boundary, up to one worker per chunk;
    /// anything else is rejected.
    func admitOrReject(_ identity: PeerIdentity, _ message: DecodedMessage, step: Int) {
        if joined.contains(where: { $0.identity == identity }) {
            if case .heartbeat = message { return }
        } else if case .hello(let hello) = message {
            let refusal = Fingerprint.refusal(of: hello, expected: fingerprint, joinToken: options.joinToken)
            if options.minWorkers != nil, joined.count < plan.chunkCount, refusal == nil {
                joined.append((identity, hello))
                log("worker on \(hello.host) (pid \(hello.pid)) joins the running job at step \(step + 2) (\(joined.count) worker(s))")
                return
            }
            let reason = refusal ?? "this job already has its \(workers.count) workers"
            messenger.reply(.error(WireErrorMessage(message: reason)), to: identity)
        } else {
            messenger.reply(.error(.helloFirst), to: identity)   // a worker of this run from before a restart
        }
        messenger.reject(from: identity, "\(message.kind.rawValue) from a process that is not a worker of this job")
    }

    /// A loss found between steps: kept for the next step when the run can go on without the
    /// worker, else the run ends now.
    func deferLoss(_ lost: WorkerLost) throws {
        guard joined.count - 1 - lostBetweenSteps.count >= options.requiredWorkers else { throw lost.error }
        if !lostBetweenSteps.contains(where: { $0.identity == lost.identity }) { lostBetweenSteps.append(lost) }
    }
}
