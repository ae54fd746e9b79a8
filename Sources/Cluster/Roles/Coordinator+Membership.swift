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
        let blocks = StreamLayout.contiguousBlocks(of: 0..<plan.chunkCount, parts: joined.count)
        workers = zip(joined.indices, blocks).map { rank, block in
            WorkerPeer(identity: joined[rank].identity, rank: rank, hello: joined[rank].hello, chunks: block, plan: plan)
        }
        // Every leaf is a node of the tree: the sum is bit-identical for any worker count.
        tree = ReductionTree(leaves: workers.flatMap(\.nodes), over: 0..<plan.chunkCount)
        for peer in workers {
            let welcome = Welcome(rank: UInt32(peer.rank), workerCount: UInt32(workers.count),
                                  runConfig: plan.config.canonicalJSON(),
                                  streamBegin: UInt32(peer.streams.lowerBound), streamEnd: UInt32(peer.streams.upperBound),
                                  step: UInt64(step), state: state.wireTensors(streams: peer.streams))
            do {
                try messenger.send(.welcome(welcome), to: peer.identity)
            } catch let error as TransportError {
                throw workers.lost(error, step: step)
            }
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

    /// A loss found between steps: kept for the next step when the run can go on without the
    /// worker, else the run ends now.
    func deferLoss(_ lost: WorkerLost) throws {
        guard joined.count - 1 - lostBetweenSteps.count >= options.requiredWorkers else { throw lost.error }
        if !lostBetweenSteps.contains(where: { $0.identity == lost.identity }) { lostBetweenSteps.append(lost) }
    }
}
