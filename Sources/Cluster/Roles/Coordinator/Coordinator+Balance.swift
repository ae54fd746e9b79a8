import Training

/// `--balance on`: between steps, chunks move from slow workers to fast ones when
/// `ChunkBalancer` predicts a clearly shorter step. The move is an ordinary reassignment at a
/// step boundary (the path a joining worker takes: welcomes with the moved streams' carried
/// state; with shards, `reassign` with the block sizes first), so the weights are those of any
/// other split, bit for bit.
extension Coordinator {
    /// Before `step` is broadcast: reassigns with the balancer's sizes when it proposes any,
    /// and says so in one line.
    func rebalanceIfWorthIt(step: Int, state: CarriedState) throws {
        let workers = machine.workers
        guard options.balance, workers.map(\.identity) == machine.joined.map(\.identity),
              let proposal = balancer.proposal(members: workers.map(\.identity), sizes: workers.map(\.chunks.count)) else { return }
        log(Self.rebalanceLine(step: step, from: workers.map(\.chunks.count), proposal))
        try assign(step: step, state: state, sizes: proposal.sizes)
        stepBalancing.rebalances += 1
        stepBalancing.movedChunks += Self.movedChunks(from: workers.map(\.chunks), to: proposal.sizes)
    }

    /// The chunks whose owner changed from the blocks `old` to contiguous blocks of `sizes`
    /// (rank order both).
    static func movedChunks(from old: [Range<Int>], to sizes: [Int]) -> Int {
        zip(old, StreamLayout.contiguousBlocks(sizes: sizes)).map { $0.count - $0.clamped(to: $1).count }.reduce(0, +)
    }

    /// "rebalanced chunks at step 7: worker 0 2→3, worker 3 2→1 (compute per chunk
    /// 50/50/50/200 ms; predicted step 400 → 200 ms)": the changed workers, then the speeds
    /// in rank order.
    static func rebalanceLine(step: Int, from old: [Int], _ proposal: ChunkBalancer.Proposal) -> String {
        let moves = zip(old, proposal.sizes).enumerated().filter { $0.element.0 != $0.element.1 }
            .map { "worker \($0.offset) \($0.element.0)→\($0.element.1)" }
        let speeds = proposal.secondsPerChunk.map(StragglerWatch.milliseconds).joined(separator: "/")
        return "rebalanced chunks at step \(step + 1): \(moves.joined(separator: ", ")) (compute per chunk \(speeds) ms; predicted step "
            + "\(StragglerWatch.milliseconds(proposal.currentSeconds)) → \(StragglerWatch.milliseconds(proposal.predictedSeconds)) ms)"
    }
}
