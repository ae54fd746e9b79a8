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
        for peer in workers { peer.reportedSlow = false }
    }

    mutating func takeHeld() -> (PeerIdentity, DecodedMessage)? { held.isEmpty ? nil : held.removeFirst() }

    mutating func stepGathered(_ step: Int) {
        longestCompute = max(longestCompute, workers.map(\.timing.computeSeconds).max() ?? 0)
        state = .betweenSteps(step: step)
    }

    /// Drops a member (lost); false when it was not one.
    mutating func remove(_ peer: PeerIdentity) -> Bool {
        guard isJoined(peer) else { return false }
        joined.removeAll { $0.identity == peer }
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

    /// One part of a member's push; the push completes when its every node is in.
    private mutating func accept(_ push: DecodedGradientPush, from worker: WorkerPeer, step: Int, now: Double) -> [Action] {
        do {
            guard let assembler = worker.assembler(for: push) else {
                throw PushRejection.notItsChunks(begin: push.chunkBegin, end: push.chunkEnd)
            }
            guard try assembler.accept(push, state: pushState!), worker.isComplete else { return [] }
            worker.arrival = now
            return [.pushComplete(worker.identity)]
        } catch {
            return [.reject(worker.identity, "\(error)")]
        }
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
        for peer in workers where !peer.isComplete {
            let silence = liveness.silence(of: peer.identity, now: t, since: gatherStart)
            if silence > options.heartbeatTimeout {
                return [.lost(WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) stopped answering at step \(s + 1) (no message for \(ClusterError.format(options.heartbeatTimeout)) s)")))]
            }
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
