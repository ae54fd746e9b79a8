import Recurrent
import Training
import Wire

/// Where a distributed run's parameters live, as the coordinator sees it: the slab in this
/// process (`SlabStore`), or S parameter shards (`ShardedStore`). Everything the coordinator
/// does differently for the two is behind this protocol, and the loop applies each step through
/// it (`ParameterStore`); the coordinator never asks which one it has.
protocol CoordinatorStore: ParameterStore {
    /// Whether a worker's push to the coordinator carries its gradient; else it carries loss,
    /// tokens and state only (the gradient went to the shards).
    var gradientComesHere: Bool { get }
    /// Transports to wait on beside the workers' (the shards'; none for the slab).
    var transports: [AnyObject] { get }
    /// Names in the mode line: "", ", 2 parameter shards".
    var modeSuffix: String { get }

    /// Before the workers join: the shards get their ranges as of `step`.
    func start(step: Int, workerCount: Int, joinToken: String?, stop: StopRequest) throws

    /// A new assignment from `step`, one rank per block of `blockSizes` chunks (contiguous, in
    /// rank order): for each rank, where its Welcome says the parameters are (shard endpoints,
    /// bounds, its ticket; empty for the slab).
    func assign(blockSizes: [Int], step: Int, resetState: Bool, stop: StopRequest) throws -> [Placement]

    /// After an assignment: waits until every rank of `ranks` reached every parameter server,
    /// calling `serve` in between (heartbeats, the workers' messages), at most `timeout`
    /// seconds. Returns a rank that did not, with the server's name; nil when all did.
    func awaitRanks(_ ranks: [Int], step: Int, timeout: Double, serve: () throws -> Void) throws -> (rank: Int, server: String)?

    /// Step `request.step`'s weights to the workers, or nothing when the shards send them.
    func broadcast(_ request: StepRequest, layout: ParameterLayout, to peers: [PeerIdentity], messenger: ServerMessenger) throws

    /// Starts gathering `step`; then `poll` takes what the parameter servers send for it, and
    /// `isReduced` says when they have all of it (the slab: at once).
    func expect(step: Int)
    func poll(step: Int) throws
    var isReduced: Bool { get }
    /// Every worker pushed at `pushedAt`: throws when the servers' part is overdue at `now`.
    func checkOverdue(step: Int, pushedAt: Double, now: Double) throws

    /// The step's sum from the workers' pushes (leaf order = rank order = chunk order) in
    /// `tree`'s fixed order, or the shards' norm blocks, into `g`.
    func reduce(_ pushes: [PushAssembler], tree: ReductionTree, count: Int, into g: inout StepGradient)

    /// `--balance on` within `step`: `helper` computes a copy of `owner`'s `node` (ranks). The
    /// servers that take the gradient must take the helper's pushes for it (the slab: this
    /// process knows already). Sent before the helper hears of it, which it does only once
    /// `reissuesTaken` counts it.
    func reissue(_ node: Range<Int>, owner: Int, helper: Int, step: Int) throws
    /// How many of the step's `reissue`s (since `expect`, in order) every server has taken (the
    /// slab: all).
    var reissuesTaken: Int { get }
    /// `rank` fell behind in `step` (a copy completed its node): it must get no weights until
    /// `release` (the slab: this process sends none, `Coordinator.heldBack`).
    func holdBack(rank: Int, step: Int) throws
    /// `rank`, held back, caught up and is welcomed at `step`: the servers send it the step's
    /// weights (the slab: this process does).
    func release(rank: Int, step: Int) throws

    func sendHeartbeatsIfDue(step: Int)
    func finish(reason: String)
}

/// The fields of a rank's Welcome that say where the parameters are.
struct Placement {
    var endpoints: [String] = []
    var bounds: [UInt64] = []
    var ticket = ""
}

/// Whether pushes of the next step can arrive before this one is over: with shards they can
/// (the shards broadcast the next weights as soon as they applied a step).
extension CoordinatorStore {
    var pushesMayRunAhead: Bool { !gradientComesHere }
}
