import Training
import Wire

/// The coordinator's membership and what every worker message means in each phase, as a state
/// machine: events in, actions out, no sockets, clocks or threads (`Coordinator` drives it, with
/// the transport, the clock and the parameter store). States:
///
///     joining ──W hellos (or, elastic, enough and none for `joinSettle` s)──▶ assigning(s)
///     assigning(s) ──every rank reached the parameter servers──▶ gathering(s)
///     gathering(s) ──every push of step s──▶ betweenSteps(s) ──next step──▶ gathering(s+1)
///     gathering / assigning ──a worker lost (silent, hung, Error), enough remain──▶ assigning(s)
///     betweenSteps(s) ──a worker joined or was lost, or chunks moved (`ChunkBalancer`)──▶ assigning(s+1)
///
/// While gathering, the driver may re-issue a late worker's node to an idle worker
/// (`reissue`, `ReissuePolicy`): the helper's push for that node feeds the owner's assembly,
/// the first complete copy counts, and later copies, and late pushes of older steps from
/// workers still computing them (`outstanding`), are dropped without a rejection.
///
/// A hello is admitted while joining and, in an elastic job, in any later phase (it joins at
/// the next step boundary); everything from a process that is not a member is refused with its
/// reason, a stranger's answer is a reply that never blocks.
struct CoordinatorMachine {
    enum State: Equatable {
        case joining
        /// Welcomes sent for step s; waiting for every rank to reach every parameter server.
        case assigning(step: Int)
        case gathering(step: Int)
        /// Step s is applied; evaluation or a checkpoint may be running.
        case betweenSteps(step: Int)
    }

    enum Event {
        case received(PeerIdentity, DecodedMessage)
        /// Time passed: join deadlines, silent and hung workers are judged against `now`.
        case tick
        /// A heartbeat to this member found its connection closed.
        case peerGone(PeerIdentity)
    }

    enum Action {
        /// To a process that is not a member: never blocks.
        case reply(Message, to: PeerIdentity)
        case reject(PeerIdentity, String)
        case log(String)
        /// Every worker joined (or, elastic, enough of them): the run can be assigned.
        case joinComplete
        /// This member's push of the step being gathered is complete.
        case pushComplete(PeerIdentity)
        /// This member failed, is silent or hung: the run goes on without it if enough remain.
        case lost(WorkerLost)
        /// A late push completed a worker's older step: its compute seconds per chunk.
        case lateTiming(PeerIdentity, secondsPerChunk: Double)
        case fail(Error)
    }

    struct Member {
        let identity: PeerIdentity
        let hello: Hello
    }

    let plan: RunPlan
    let options: CoordinatorOptions
    let fingerprint: Hello
    private(set) var state = State.joining
    /// Workers that said hello, in join order; `workers`: the current assignment (ranks).
    private(set) var joined: [Member] = []
    private(set) var workers: [WorkerPeer] = []
    /// Pushes that arrived before their step was gathered (see `Coordinator.heldPushes`).
    private(set) var held: [(PeerIdentity, DecodedMessage)] = []
    var maximumHeld: Int { 4 * plan.chunkCount + 8 }
    /// Whether a push of step s+1 can come while step s is between steps (sharded servers
    /// broadcast the next weights at once).
    let pushesMayRunAhead: Bool
    private var liveness = Liveness()
    private var joinStarted: Double
    private var lastJoin: Double
    private var gatherStart = 0.0
    /// The longest compute any worker reported for a step so far: the stall bound scales with it.
    private(set) var longestCompute = 0.0
    /// The nodes of the step being gathered that were re-issued: owner and helper.
    private(set) var reissued: [Range<Int>: (owner: PeerIdentity, helper: PeerIdentity)] = [:]
    /// (peer, node) whose last part the peer itself delivered this step.
    private var lastParts: Set<NodeCopy> = []
    /// Work a peer is still computing for an older step (it fell behind, or a re-issued copy
    /// that lost): its pushes up to `step` are dropped without a rejection until its last part.
    private(set) var outstanding: [PeerIdentity: Outstanding] = [:]

    struct NodeCopy: Hashable {
        let peer: PeerIdentity
        let node: Range<Int>
    }

    struct Outstanding {
        let step: UInt64
        let lastNode: Range<Int>
        /// The owner's chunks when it fell behind (its late timing is per chunk); nil for a helper.
        let chunks: Int?
        /// When that step began.
        var since = 0.0
    }

    init(plan: RunPlan, options: CoordinatorOptions, fingerprint: Hello, pushesMayRunAhead: Bool, now: Double) {
        self.plan = plan
        self.options = options
        self.fingerprint = fingerprint
        self.pushesMayRunAhead = pushesMayRunAhead
        joinStarted = now
        lastJoin = now
    }

    /// The join starts now: its timeout and the elastic settle time count from here (after
    /// the parameter servers were set up, which may take a while).
    mutating func beginJoin(now: Double) {
        joinStarted = now
        lastJoin = now
    }

    func member(_ peer: PeerIdentity) -> WorkerPeer? { workers.first { $0.identity == peer } }
    func isJoined(_ peer: PeerIdentity) -> Bool { joined.contains { $0.identity == peer } }

    // MARK: Transitions the driver makes

    /// A new assignment at `step` (the driver welcomes `workers`): the old one's held pushes
    /// are dropped, for the step is computed again.
    mutating func assign(_ workers: [WorkerPeer], step: Int, now: Double) {
        self.workers = workers
        held = []
        for peer in workers { liveness.heard(peer.identity, at: now) }
        state = .assigning(step: step)
    }

    /// Starts gathering `step`: the next held push first.
    mutating func gather(step: Int, now: Double) {
        state = .gathering(step: step)
        gatherStart = now
        reissued = [:]
        lastParts = []
        for peer in workers { peer.reportedSlow = false }
    }

    /// When the step being gathered started.
    var gatherStarted: Double { gatherStart }

    /// The driver sent `node` of `owner`'s block to `helper`: the helper's push for it counts.
    mutating func reissue(_ node: Range<Int>, of owner: PeerIdentity, to helper: PeerIdentity) {
        reissued[node] = (owner, helper)
    }

    /// Whether `peer` is computing something it was not asked for in this step's own work: a
    /// re-issued node, or an older step.
    func isBusy(_ peer: PeerIdentity) -> Bool {
        outstanding[peer] != nil || reissued.values.contains { $0.helper == peer }
    }

    /// Whether this worker fell behind on its own block and has not sent the last push of the
    /// step it still computes.
    func isBehind(_ peer: PeerIdentity) -> Bool { outstanding[peer]?.chunks != nil }

    mutating func takeHeld() -> (PeerIdentity, DecodedMessage)? { held.isEmpty ? nil : held.removeFirst() }

    /// Step `step` is complete. Returns the workers that fell behind: a copy completed one of
    /// their nodes before they did, with a lower bound of their seconds per chunk (the time
    /// the step took). They and the helpers whose copies lost are still computing it.
    mutating func stepGathered(_ step: Int, now: Double) -> [(identity: PeerIdentity, secondsPerChunk: Double)] {
        var behind: [(identity: PeerIdentity, secondsPerChunk: Double)] = []
        for (node, copy) in reissued {
            if !lastParts.contains(NodeCopy(peer: copy.helper, node: node)) {
                outstanding[copy.helper] = Outstanding(step: UInt64(step), lastNode: node, chunks: nil)
            }
            guard let owner = member(copy.owner), !lastParts.contains(NodeCopy(peer: owner.identity, node: owner.nodes.last!)),
                  !behind.contains(where: { $0.identity == owner.identity }) else { continue }
            // An owner already behind did not get this step's weights (`Coordinator.heldBack`):
            // it still owes the older step. Either way its timing is not its own this step.
            if !isBehind(owner.identity) {
                outstanding[owner.identity] = Outstanding(step: UInt64(step), lastNode: owner.nodes.last!, chunks: owner.chunks.count, since: gatherStart)
            }
            behind.append((owner.identity, (now - gatherStart) / Double(owner.chunks.count)))
        }
        let behindIdentities = behind.map(\.identity)
        let timed = workers.filter { !behindIdentities.contains($0.identity) }
        longestCompute = max(longestCompute, timed.map(\.timing.computeSeconds).max() ?? 0)
        state = .betweenSteps(step: step)
        return behind
    }

    /// Drops a member (lost); false when it was not one.
    mutating func remove(_ peer: PeerIdentity) -> Bool {
        guard isJoined(peer) else { return false }
        joined.removeAll { $0.identity == peer }
        outstanding[peer] = nil
        return true
    }

    // MARK: Events

    mutating func handle(_ event: Event, now: Double) -> [Action] {
        switch (event, state) {
        case (.received(let peer, let message), _):
            if isJoined(peer) { liveness.heard(peer, at: now) }
            return receive(message, from: peer, now: now)
        case (.tick, .joining):
            return joinTick(now: now)
        case (.tick, .gathering(let step)):
            return checkLiveness(step: step, now: now)
        case (.tick, _):
            return []
        case (.peerGone(let peer), .joining):
            guard let left = joined.first(where: { $0.identity == peer })?.hello else { return [] }
            joined.removeAll { $0.identity == peer }
            return [.log("worker on \(left.host) (pid \(left.pid)) left before the run started (\(joined.count)/\(options.workers))")]
        case (.peerGone(let peer), _):
            return [.lost(Self.gone(member(peer), peer, step: currentStep))]
        }
    }

    var currentStep: Int {
        switch state {
        case .joining: return 0
        case .assigning(let s), .gathering(let s), .betweenSteps(let s): return s
        }
    }

    private static func gone(_ peer: WorkerPeer?, _ identity: PeerIdentity, step: Int) -> WorkerLost {
        WorkerLost(identity: identity, error: .workerFailed("\(peer?.name ?? "a worker") is gone (connection closed) at step \(step + 1)"))
    }

    private mutating func receive(_ message: DecodedMessage, from peer: PeerIdentity, now: Double) -> [Action] {
        if case .joining = state { return whileJoining(message, from: peer, now: now) }
        if case .gradientPush(let push) = message, let late = outstanding[peer], push.step <= late.step {
            return dropLate(push, from: peer, late)
        }
        guard let worker = member(peer) else { return admitOrReject(peer, message, now: now) }
        switch (message, state) {
        case (.heartbeat, _):
            return []
        case (.gradientPush(let push), .gathering(let step)):
            return accept(push, from: worker, step: step, now: now)
        case (.gradientPush, .assigning), (.gradientPush, .betweenSteps):
            // A worker has every shard's weights as soon as the last hello reached the shards,
            // and shards broadcast the next step as soon as they applied one: such a push is
            // kept for the gather (dropped, the step would wait for it forever).
            guard isAssigning || pushesMayRunAhead, held.count < maximumHeld else {
                return [.reject(peer, "unexpected \(message.kind.rawValue) \(phase)")]
            }
            held.append((peer, message))
            return []
        case (.error(let error), .gathering(let step)), (.error(let error), .assigning(let step)):
            return [.lost(WorkerLost(identity: peer, error: .workerFailed("\(worker.name) failed at step \(step + 1): \(error.message)")))]
        case (.error(let error), _):
            return [.fail(ClusterError.workerFailed("\(worker.name) failed: \(error.message)"))]
        default:
            return [.reject(peer, "unexpected \(message.kind.rawValue) \(phase)")]
        }
    }

    private var isAssigning: Bool { if case .assigning = state { return true } else { return false } }

    private var phase: String {
        switch state {
        case .joining: return "while waiting for workers"
        case .assigning(let s), .gathering(let s): return "during step \(s + 1)"
        case .betweenSteps: return "between steps"
        }
    }

    /// One part of a push: of the sender's own node, or of a node re-issued to it (which feeds
    /// the owner's assembly). The owner's push completes when its every node is in; a part
    /// another copy already brought is dropped.
    private mutating func accept(_ push: DecodedGradientPush, from sender: WorkerPeer, step: Int, now: Double) -> [Action] {
        let copied = push.chunks.flatMap { reissued[$0] }
        let owner = copied.flatMap { member($0.owner) } ?? sender
        guard let assembler = sender.assembler(for: push)
                ?? (copied?.helper == sender.identity ? owner.assembler(for: push) : nil) else {
            return [.reject(sender.identity, "\(PushRejection.notItsChunks(begin: push.chunkBegin, end: push.chunkEnd))")]
        }
        if push.part + 1 == push.parts, let node = push.chunks { lastParts.insert(NodeCopy(peer: sender.identity, node: node)) }
        do {
            guard try assembler.accept(push, state: pushState!), owner.isComplete else { return [] }
            owner.arrival = now
            return [.pushComplete(owner.identity)]
        } catch let rejection as PushRejection where copied != nil && rejection.isRepeat {
            return []   // another copy brought this part first: the same values
        } catch {
            return [.reject(sender.identity, "\(error)")]
        }
    }

    /// A push of an older step from a peer still computing it: dropped; its last part
    /// ends the peer's outstanding work, and an owner's gives its real speed to the balancer.
    private mutating func dropLate(_ push: DecodedGradientPush, from peer: PeerIdentity, _ late: Outstanding) -> [Action] {
        guard push.step == late.step, push.chunks == late.lastNode, push.part + 1 == push.parts else { return [] }
        outstanding[peer] = nil
        guard let chunks = late.chunks, push.computeSeconds.isFinite, push.computeSeconds > 0 else { return [] }
        return [.lateTiming(peer, secondsPerChunk: push.computeSeconds / Double(chunks))]
    }

    /// Where the gathered pushes' carried state goes (the loop's `next`), set by the driver.
    var pushState: CarriedState?

    // MARK: Joining

    private mutating func whileJoining(_ message: DecodedMessage, from peer: PeerIdentity, now: Double) -> [Action] {
        if isJoined(peer) {
            if case .heartbeat = message { return [] }
            return [.reject(peer, "unexpected \(message.kind.rawValue) while waiting for workers")]
        }
        guard case .hello(let hello) = message else {
            // A worker of this run before a restart: it answers with its hello at once.
            return [.reject(peer, "\(message.kind.rawValue) before hello (asked for its hello)"), .reply(.error(.helloFirst), to: peer)]
        }
        if let refusal = Fingerprint.refusal(of: hello, expected: fingerprint, joinToken: options.joinToken) {
            return [.reject(peer, "refused worker on \(hello.host) (pid \(hello.pid)): \(refusal)"),
                    .reply(.error(WireErrorMessage(message: refusal)), to: peer)]
        }
        joined.append(Member(identity: peer, hello: hello))
        liveness.heard(peer, at: now)
        lastJoin = now
        var actions: [Action] = [.log("worker \(joined.count - 1) (host \(hello.host), pid \(hello.pid)) joined with \(hello.threads) thread(s) (\(joined.count)/\(options.workers))")]
        if joined.count == options.workers { actions.append(.joinComplete) }
        return actions
    }

    /// Elastic: enough workers and none new for `joinSettle` s starts the run; else the join
    /// timeout ends it.
    private mutating func joinTick(now: Double) -> [Action] {
        if options.minWorkers != nil, joined.count >= options.requiredWorkers, now - lastJoin >= options.joinSettle {
            return [.log("starting with \(joined.count) of \(options.workers) worker(s) (at least \(options.requiredWorkers) required); the others join at a step boundary"),
                    .joinComplete]
        }
        guard now - joinStarted < options.joinTimeout else {
            return [.fail(ClusterError.joinTimeout(joined: joined.count, expected: options.workers, seconds: options.joinTimeout))]
        }
        return []
    }

    /// A message from a process that is not an assigned worker. A joined worker waiting for its
    /// first step only keeps its place; in an elastic job (`minWorkers` set) a hello that passes
    /// the checks joins at the next step boundary, up to one worker per chunk; anything else is
    /// refused.
    private mutating func admitOrReject(_ peer: PeerIdentity, _ message: DecodedMessage, now: Double) -> [Action] {
        var actions: [Action] = []
        if isJoined(peer) {
            if case .heartbeat = message { return [] }
        } else if case .hello(let hello) = message {
            let refusal = Fingerprint.refusal(of: hello, expected: fingerprint, joinToken: options.joinToken)
            if options.minWorkers != nil, joined.count < plan.chunkCount, refusal == nil {
                joined.append(Member(identity: peer, hello: hello))
                liveness.heard(peer, at: now)
                return [.log("worker on \(hello.host) (pid \(hello.pid)) joins the running job at step \(currentStep + 2) (\(joined.count) worker(s))")]
            }
            actions.append(.reply(.error(WireErrorMessage(message: refusal ?? "this job already has its \(workers.count) workers")), to: peer))
        } else {
            actions.append(.reply(.error(.helloFirst), to: peer))   // a worker of this run from before a restart
        }
        return actions + [.reject(peer, "\(message.kind.rawValue) from a process that is not a worker of this job")]
    }

    // MARK: Liveness

    /// How long a worker that heartbeats may go without completing its push of a step before it
    /// counts as lost: 4 heartbeat timeouts, or 10 times the longest step compute seen so far
    /// when that is more (a hung compute thread keeps heartbeating; a slow node does not take 10
    /// times its own worst step).
    var stallLimit: Double { max(4 * options.heartbeatTimeout, 10 * longestCompute) }

    /// A worker that has not pushed yet and has been silent too long (dead) or made no progress
    /// past `stallLimit` (hung) is lost; one still computing after a heartbeat timeout is named
    /// once per step (slow, but alive).
    private mutating func checkLiveness(step s: Int, now t: Double) -> [Action] {
        var actions: [Action] = []
        for peer in workers {   // a worker whose nodes copies completed must still answer
            let silence = liveness.silence(of: peer.identity, now: t, since: gatherStart)
            if silence > options.heartbeatTimeout {
                return [.lost(WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) stopped answering at step \(s + 1) (no message for \(ClusterError.format(options.heartbeatTimeout)) s)")))]
            }
            if let late = outstanding[peer.identity], late.chunks != nil, t - late.since > stallLimit {   // behind, and stays so
                return [.lost(WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) made no progress on step \(late.step + 1) for \(ClusterError.format((t - late.since).rounded())) s though its heartbeats arrive (hung?)")))]
            }
            guard !peer.isComplete else { continue }
            if t - gatherStart > stallLimit {
                return [.lost(WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) made no progress on step \(s + 1) for \(ClusterError.format((t - gatherStart).rounded())) s though its heartbeats arrive (hung?)")))]
            }
            if !peer.reportedSlow, t - gatherStart > options.heartbeatTimeout {
                peer.reportedSlow = true
                actions.append(.log("\(peer.name) is slow: no gradient for step \(s + 1) after \(ClusterError.format((t - gatherStart).rounded())) s, but its heartbeats arrive"))
            }
        }
        return actions
    }
}
