import Wire

/// What re-issue within a step (`--balance on`) changes at a shard: which nodes of the step
/// being gathered another rank may push (the coordinator's `reissue` command), which ranks may
/// still send pushes of an older step (a copy that lost, a step they fell behind on), and which
/// ranks get no weights (held back until the coordinator's `release`).
///
/// A copy cannot change a bit: a node's sum is the same whoever computes it (the helper has the
/// step's weights and the node's carried state), so the first copy of each piece counts and a
/// later one is dropped without a rejection: it is no attack, only late.
struct ShardCopies {
    struct Grant: Equatable {
        let owner: Int
        let helper: Int
    }

    /// The nodes of the step being gathered that were re-issued; cleared with each new step.
    private(set) var grants: [Range<Int>: Grant] = [:]
    /// Per rank, the last step whose pushes it may still send late, dropped quietly.
    private var lateUpTo: [Int: UInt64] = [:]
    /// Ranks that fell behind: left out of every broadcast until the coordinator releases them.
    private(set) var held: Set<Int> = []

    /// `command` (kind `reissue`) for a run at `step` whose ranks hold `nodesOfRank`: checked
    /// before anything is recorded; a grant that does not fit the run is a protocol violation
    /// (the coordinator is broken), as a bad `reassign` is.
    mutating func grant(_ command: ShardCommand, step: UInt64, nodesOfRank: [[Range<Int>]]) throws {
        let owner = Int(command.owner), helper = Int(command.helper)
        let node = Int(command.chunkBegin)..<Int(max(command.chunkBegin, command.chunkEnd))
        guard command.step == step, owner < nodesOfRank.count, helper < nodesOfRank.count, owner != helper,
              command.chunkBegin < command.chunkEnd, nodesOfRank[owner].contains(node) else {
            throw ClusterError.protocolViolation("reissue of chunks \(command.chunkBegin)..<\(command.chunkEnd) of step \(oneBased(command.step)) from rank \(command.owner) to rank \(command.helper): not a node of that rank's block in step \(oneBased(step)) of \(nodesOfRank.count) ranks")
        }
        grants[node] = Grant(owner: owner, helper: helper)
        for rank in [owner, helper] { lateUpTo[rank] = max(lateUpTo[rank] ?? 0, step) }
    }

    /// `command` (kind `holdBack`): rank `owner` fell behind in `step`.
    mutating func holdBack(_ command: ShardCommand, step: UInt64, workerCount: Int) throws {
        try check(command, step: step, workerCount: workerCount)
        held.insert(Int(command.owner))
        lateUpTo[Int(command.owner)] = max(lateUpTo[Int(command.owner)] ?? 0, step)
    }

    /// `command` (kind `release`): rank `owner` caught up and is welcomed at `step`. Hold and
    /// release come on the coordinator's connection, in order, so a worker's hello (on its own
    /// connection, before or after either) never decides. A rank not held stays so.
    mutating func release(_ command: ShardCommand, step: UInt64, workerCount: Int) throws {
        try check(command, step: step, workerCount: workerCount)
        held.remove(Int(command.owner))
    }

    private func check(_ command: ShardCommand, step: UInt64, workerCount: Int) throws {
        guard command.step == step, Int(command.owner) < workerCount else {
            throw ClusterError.protocolViolation("\(command.kind == .release ? "release" : "hold back") rank \(command.owner) in step \(oneBased(command.step)): this shard holds step \(oneBased(step)) of \(workerCount) ranks")
        }
    }

    /// Whether `rank` may push `node` of the current step for its owner.
    func isHelper(_ rank: Int, of node: Range<Int>) -> Bool { grants[node]?.helper == rank }

    /// Whether a repeat of `node` from `rank` is a copy's, dropped quietly: the node was
    /// re-issued and `rank` is its owner or helper.
    func isCopy(_ node: Range<Int>?, from rank: Int) -> Bool {
        guard let grant = node.flatMap({ grants[$0] }) else { return false }
        return grant.owner == rank || grant.helper == rank
    }

    /// Whether a push of `pushStep` from `rank` is late work the shard drops quietly: an older
    /// step than the one gathered (`step`) that the rank still computed after a re-issue.
    func isLate(_ pushStep: UInt64, from rank: Int, step: UInt64) -> Bool {
        guard let last = lateUpTo[rank] else { return false }
        return pushStep < step && pushStep <= last
    }

    /// A new step: the grants were the old step's.
    mutating func newStep() { grants = [:] }

    /// A new assignment: ranks change meaning, so nothing is kept.
    mutating func reset() { self = ShardCopies() }
}
