import Recurrent
import Foundation
import Training
import Wire

/// S parameter shards (`--shards S`): they hold the weights and optimizer state, gather the
/// gradient, report the Σg² of their norm blocks and apply the update with the global norm the
/// coordinator sends back; they broadcast the weights themselves. The session's update is
/// brought back from them when the loop reads it.
final class ShardedStore: CoordinatorStore {
    let links: ShardLinks
    private let plan: RunPlan
    private let heartbeatTimeout: Double
    private let stop: StopRequest
    private let log: (String) -> Void
    /// Each shard's Σg² of its norm blocks for the step being gathered.
    private var squares: [[Double]?] = []
    /// How many of the step's re-issue grants each shard took.
    private var granted: [Int] = []
    /// The shards changed the weights since the session's update last fetched them.
    private var needsFetch = false
    private var lastApplied = 0

    init(_ connection: ShardConnection, plan: RunPlan, heartbeatTimeout: Double, stop: StopRequest, log: @escaping (String) -> Void) throws {
        links = try ShardLinks(connection, plan: plan, heartbeatTimeout: heartbeatTimeout, log: log)
        self.plan = plan
        self.heartbeatTimeout = heartbeatTimeout
        self.stop = stop
        self.log = log
    }

    var gradientComesHere: Bool { false }
    var transports: [AnyObject] { links.transports }
    var modeSuffix: String { ", \(links.count) parameter shards" }

    func start(step: Int, workerCount: Int, joinToken: String?, stop: StopRequest) throws {
        try links.setUp(plan: plan, step: step, workerCount: workerCount, joinToken: joinToken, stop: stop)
    }

    /// The shards drop what they gathered for this step and broadcast its weights again once the
    /// workers of this assignment said hello, each with its rank's ticket.
    func assign(blockSizes: [Int], step: Int, resetState: Bool, stop: StopRequest) throws -> [Placement] {
        let tickets = blockSizes.map { _ in JoinSecret.make() }
        try links.reassign(tickets: tickets, blockSizes: blockSizes, step: step, resetState: resetState, stop: stop)
        return tickets.map { Placement(endpoints: links.connection.endpoints, bounds: links.bounds, ticket: $0) }
    }

    /// Every worker must reach every shard (each shard reports each hello) within `timeout`:
    /// a step could never complete without it.
    func awaitRanks(_ ranks: [Int], step: Int, timeout: Double, serve: () throws -> Void) throws -> (rank: Int, server: String)? {
        var seen = Array(repeating: Set<Int>(), count: links.count)
        let deadline = monotonicSeconds() + timeout
        while seen.contains(where: { !$0.isSuperset(of: ranks) }) {
            try serve()
            for (k, message) in try links.poll() {
                guard case .shardReport(let report) = message else { continue }
                if report.kind == .workerJoined {
                    seen[k].insert(Int(report.step))
                } else if report.kind == .blockSquares, report.step == UInt64(step) {
                    // A shard that has every push of `step` reports its norm blocks, maybe before
                    // another shard's hello reports arrive here: kept for the gather.
                    links.hold(k, message)
                }
            }
            if monotonicSeconds() > deadline, let k = seen.indices.first(where: { !seen[$0].isSuperset(of: ranks) }),
               let rank = ranks.first(where: { !seen[k].contains($0) }) {
                return (rank, links.name(k))
            }
            try waitForInput(links.transports, timeout: 0.05)
        }
        return nil
    }

    func broadcast(_ request: StepRequest, layout: ParameterLayout, to peers: [PeerIdentity], messenger: ServerMessenger) throws {}

    func expect(step: Int) {
        squares = Array(repeating: nil, count: links.count)
        granted = Array(repeating: 0, count: links.count)
    }

    /// The shards' reports of their norm blocks and re-issue grants for the step; a grant's
    /// answer of an older step is dropped quietly (late), anything else with a line.
    func poll(step s: Int) throws {
        for (k, message) in try links.poll() {
            if case .shardReport(let report) = message, report.kind == .granted {
                if report.step == UInt64(s) { granted[k] += 1 }
                continue
            }
            guard case .shardReport(let report) = message, report.kind == .blockSquares, report.step == UInt64(s),
                  report.blockSquares.count == links.partition.shardBlocks[k].count else {
                log("ignored \(message.kind.rawValue) from \(links.name(k)) while gathering step \(s + 1)")
                continue
            }
            squares[k] = report.blockSquares
        }
    }

    var isReduced: Bool { !squares.contains { $0 == nil } }

    func checkOverdue(step: Int, pushedAt: Double, now: Double) throws {
        if now - pushedAt > heartbeatTimeout, let k = squares.firstIndex(where: { $0 == nil }) {
            throw ClusterError.shardLost("\(links.name(k)) sent no gradient norm for step \(step + 1) within \(ClusterError.format(heartbeatTimeout)) s of the last push")
        }
    }

    func reduce(_ pushes: [PushAssembler], tree: ReductionTree, count: Int, into g: inout StepGradient) {
        g.gradientSum = nil
        g.blockSquares = squares.flatMap { $0 ?? [] }
    }

    /// The global norm from every shard's blocks, in block order; each shard clips its range by
    /// it, takes the optimizer step and broadcasts the next weights. A norm that is not finite
    /// is sent nowhere: nothing changes and the loop stops the run.
    func apply(_ g: StepGradient, step: Int) throws -> ParameterUpdate.Report {
        let norm = GradientClipping.norm(blockSquares: g.blockSquares)
        let rate = links.connection.update.schedule.rate(atStep: step)
        lastApplied = step
        guard norm.isFinite else { return .init(gradientNorm: norm, learningRate: rate) }
        let next = step + 1
        try links.send(ShardCommand(kind: .apply, step: UInt64(step), norm: norm, broadcastNext: next < plan.config.steps,
                                    resetState: plan.position(globalStep: next).stepInEpoch == 0))
        needsFetch = true
        return .init(gradientNorm: norm, learningRate: rate)
    }

    /// Fetches the weights and optimizer state of the last applied step into the session's
    /// update, once per step.
    func synchronize() throws {
        guard needsFetch else { return }
        try links.fetchState(step: lastApplied, stop: stop)
        needsFetch = false
    }

    /// Every shard takes the helper's pieces of `node` as the owner's (`ShardCopies`).
    func reissue(_ node: Range<Int>, owner: Int, helper: Int, step: Int) throws {
        try links.send(ShardCommand(kind: .reissue, step: UInt64(step), chunkBegin: UInt32(node.lowerBound),
                                    chunkEnd: UInt32(node.upperBound), owner: UInt32(owner), helper: UInt32(helper)))
    }

    var reissuesTaken: Int { granted.min() ?? 0 }

    /// Sent before `apply`, so no shard broadcasts the next weights to `rank`: they come after
    /// `release`.
    func holdBack(rank: Int, step: Int) throws {
        try links.send(ShardCommand(kind: .holdBack, step: UInt64(step), owner: UInt32(rank)))
    }

    /// Sent with the worker's welcome, on the same connection as `holdBack` and so after it:
    /// each shard sends the step's weights once it has this and the worker's hello.
    func release(rank: Int, step: Int) throws {
        try links.send(ShardCommand(kind: .release, step: UInt64(step), owner: UInt32(rank)))
    }

    func sendHeartbeatsIfDue(step: Int) { links.sendHeartbeatsIfDue(step: step) }
    func finish(reason: String) { links.shutdown(reason: reason) }
}
