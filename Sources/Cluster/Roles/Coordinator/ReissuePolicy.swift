/// The re-issue policy of `--balance on` within a step: which nodes of a worker still
/// computing an idle worker computes a second time. A value with no clock and no sockets (the
/// coordinator asks it while gathering, with the time the step has run).
///
/// A node is re-issued when an idle worker would finish it clearly before its owner is
/// predicted to finish its block: by `minimumGain` of the owner's predicted time and at least
/// `minimumSavedSeconds`. The owner's finish is its seconds per chunk (the median of its
/// measured steps, `ChunkBalancer`; else the speed of the workers already done with this step)
/// × its chunks, from when it started the step (a worker that fell behind starts late, once
/// it caught up); it is unknown (any helper is sooner) when the owner is past `lateFactor`
/// times that and `minimumLateSeconds` more (it stalled: a noisy neighbour, a pause,
/// throttling; a few milliseconds of scheduling noise on a short step are not a stall) or has
/// not started the step at all (it is still computing an older one).
///
/// An owner on time is left alone while it holds more than one chunk: the balancer gives a
/// steady straggler fewer chunks at the next boundary, and a copy that wins makes the owner
/// fall behind (it is held back a step and welcomed again), which costs more than it saves.
/// With one chunk the balancer can give it no less, so there a copy is the only help. Idle
/// workers are taken first finished first, one node each, and each node gets at most one copy
/// per step. In an equal fleet nothing moves (a helper would finish a node after its owner).
/// Copies cannot change a bit: a node's sum is the same whoever computes it, and the first
/// complete copy is the one kept.
struct ReissuePolicy {
    var lateFactor = 2.0
    var minimumLateSeconds = 0.02
    var minimumGain = 0.10
    var minimumSavedSeconds = 0.005

    /// A worker still computing the step.
    struct Owner {
        var identity: PeerIdentity
        var chunks: Int
        /// Its nodes whose push is not in and that no helper has yet.
        var openNodes: [Range<Int>]
        /// From its own measurements; nil before there are enough.
        var secondsPerChunk: Double?
        /// Seconds after the step's start at which it got the step's weights: 0 with the others,
        /// later when it had fallen behind and caught up, nil when it has not got them yet.
        var startedAt: Double? = 0
    }

    /// A worker done with this step and computing nothing else.
    struct Helper {
        var identity: PeerIdentity
        var secondsPerChunk: Double?
    }

    struct Decision: Equatable {
        var node: Range<Int>
        var owner: PeerIdentity
        var helper: PeerIdentity
    }

    /// - Parameters:
    ///   - elapsed: seconds since the step's weights went out.
    ///   - owners: the workers still computing, in rank order.
    ///   - finishedSecondsPerChunk: of the workers done with this step (elapsed at their push
    ///     over their chunks): the stand-in speed of a worker not measured yet.
    ///   - idle: first finished first.
    func decisions(elapsed: Double, owners: [Owner], finishedSecondsPerChunk: [Double], idle: [Helper]) -> [Decision] {
        let standIn = ChunkBalancer.median(finishedSecondsPerChunk)
        var helpers = idle[...]
        var chosen: [Decision] = []
        for owner in owners where !owner.openNodes.isEmpty {
            guard let finish = predictedFinish(of: owner, elapsed: elapsed, standIn: standIn) else { continue }
            for node in owner.openNodes {
                guard let helper = helpers.first,
                      let perChunk = helper.secondsPerChunk ?? standIn ?? owner.secondsPerChunk else { return chosen }
                let helperFinish = elapsed + perChunk * Double(node.count)
                guard helperFinish < finish * (1 - minimumGain), finish - helperFinish >= minimumSavedSeconds else { continue }
                helpers.removeFirst()
                chosen.append(Decision(node: node, owner: owner.identity, helper: helper.identity))
            }
        }
        return chosen
    }

    /// Seconds from the step's start to the owner's predicted finish; infinity when it is late
    /// or has not started; nil when nothing predicts it or it is on time with more than one chunk.
    func predictedFinish(of owner: Owner, elapsed: Double, standIn: Double?) -> Double? {
        guard let start = owner.startedAt else { return .infinity }
        guard let perChunk = owner.secondsPerChunk ?? standIn, perChunk > 0 else { return nil }
        let expected = perChunk * Double(owner.chunks)
        if elapsed - start > max(lateFactor * expected, expected + minimumLateSeconds) { return .infinity }
        return owner.chunks == 1 ? start + expected : nil   // on time: the balancer's business
    }
}
