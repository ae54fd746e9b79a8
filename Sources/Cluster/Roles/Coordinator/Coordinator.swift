import Foundation
import Recurrent
import Training
import Wire

/// The parameter server as a `GradientSource` of the training loop (ps-lite's server, one
/// request type): join W workers and give each a contiguous block of whole gradient chunks;
/// then per step broadcast the weights, gather one push per worker, and sum the workers'
/// blocks through the fixed `ReductionTree`. The loop does the rest (clip, optimizer,
/// checkpoints) through `store`, where the parameters live: this process's slab, or S
/// parameter shards.
///
/// What each message means is `CoordinatorMachine`'s decision; this class drives it: it owns
/// the transport, the clock, the heartbeats and the store, feeds the machine events and carries
/// out its actions. A worker that fails, disconnects or stays silent past the heartbeat timeout
/// ends the run with an error naming it, or (elastic) the others compute its chunks.
public final class Coordinator: GradientSource {
    public let plan: RunPlan
    public let options: CoordinatorOptions
    let stop: StopRequest
    let log: (String) -> Void
    let messenger: ServerMessenger
    /// Where the parameters live (`SlabStore`, `ShardedStore`).
    let parameters: CoordinatorStore
    public var store: ParameterStore { parameters }
    var machine: CoordinatorMachine
    /// The fixed reduction order of the current assignment: one leaf per tree node a worker holds.
    var tree: ReductionTree
    /// Workers found gone while evaluating or checkpointing; dropped at the next step.
    var lostBetweenSteps: [WorkerLost] = []
    private var heartbeats: HeartbeatSchedule
    private var stragglers = StragglerWatch()
    /// `--balance`: the workers' measured speeds and whether a new split is worth it.
    var balancer = ChunkBalancer()
    /// `--balance on`: late workers' nodes to idle workers within a step.
    let reissuePolicy = ReissuePolicy()
    /// What balancing did for the step being computed (the step record's `balancing`).
    var stepBalancing = BalancingCounts()
    /// Workers that fell behind and got no weights since: each needs a welcome with its
    /// streams' state before its next weights (`Coordinator+Reissue`).
    var heldBack: Set<PeerIdentity> = []
    /// Held-back workers given the step being gathered after it began: when (they start late).
    var resumedAt: [PeerIdentity: Double] = [:]
    /// Copies decided in the step being gathered whose helper waits for every parameter
    /// server to take the grant (`sendGrantedReissues`), in the order granted.
    var waitingReissues: [(helper: PeerIdentity, reissue: Reissue)] = []
    /// How many nodes of the step being gathered were re-issued (grants sent).
    var reissuesGranted = 0
    /// Where each rank of the current assignment finds the parameters (a welcome again after
    /// it fell behind names the same).
    var placements: [Placement] = []

    /// The limits every message from a worker must keep: one gradient plus its state.
    public static func decodeLimits(_ plan: RunPlan) -> DecodeLimits { DecodeLimits(plan: plan) }

    /// `update`: the session's, which the store applies to or (sharded) fetches into.
    public init(plan: RunPlan, corpus: Corpus, options: CoordinatorOptions, transport: ServerTransport,
                stop: StopRequest, update: ParameterUpdate, shards: ShardConnection? = nil, log: @escaping (String) -> Void) throws {
        guard options.workers >= 1, options.workers <= plan.chunkCount else {
            throw ClusterError.tooFewChunks(workers: options.workers, chunks: plan.chunkCount)
        }
        parameters = try shards.map {
            try ShardedStore($0, plan: plan, heartbeatTimeout: options.heartbeatTimeout, stop: stop, log: log)
        } ?? SlabStore(update)
        self.plan = plan
        self.options = options
        self.stop = stop
        self.log = log
        machine = CoordinatorMachine(plan: plan, options: options, fingerprint: Fingerprint.hello(corpus: corpus, threads: 0),
                                     pushesMayRunAhead: parameters.pushesMayRunAhead, now: monotonicSeconds())
        tree = ReductionTree(leaves: [0..<plan.chunkCount], over: 0..<plan.chunkCount)
        heartbeats = HeartbeatSchedule(timeout: options.heartbeatTimeout)
        messenger = ServerMessenger(transport: transport, limits: Self.decodeLimits(plan), log: log)
        messenger.describe = { [unowned self] identity in machine.member(identity)?.name ?? ServerMessenger.anonymous(identity) }
    }

    public var endpoint: String { messenger.transport.endpoint }
    public var mode: String { "coordinator \(endpoint), \(options.workers) worker(s)" + parameters.modeSuffix }

    // MARK: Join

    /// Waits for W workers with the right fingerprint (elastic: enough of them), assigns chunks
    /// in join order and welcomes each with its streams and their carried state.
    public func start(step: Int, state: CarriedState) throws {
        try parameters.start(step: step, workerCount: options.workers, joinToken: options.joinToken, stop: stop)
        machine.beginJoin(now: monotonicSeconds())
        log("waiting for \(options.workers) worker(s) on \(endpoint)")
        while true {
            try stop.check()
            if try feed(.tick).joinComplete { break }
            _ = try sendHeartbeatsIfDue(step: step)   // the machine drops a worker that left
            guard let (identity, message) = try messenger.receive(timeout: 0.2) else { continue }
            if try feed(.received(identity, message)).joinComplete { break }
        }
        try assign(step: step, state: state)
    }

    // MARK: Step

    /// Broadcasts the weights, gathers every worker's push (its state lands in `next`) and
    /// sums the worker blocks in the fixed tree order. A lost worker is dropped and the step
    /// computed again by the others while at least `minWorkers` remain (exact: any split of
    /// the chunks gives the same sum).
    public func gradient(for request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient {
        stepBalancing = BalancingCounts()
        for lost in lostBetweenSteps { try continueWithout(lost, step: request.step, state: state) }
        lostBetweenSteps = []
        do {
            if machine.workers.count != machine.joined.count {   // workers joined since the last step
                try assign(step: request.step, state: state)
            } else {
                try rebalanceIfWorthIt(step: request.step, state: state)
            }
        } catch let lost as WorkerLost {
            try continueWithout(lost, step: request.step, state: state)
        }
        while true {
            do {
                return try gather(request, state: state, next: next)
            } catch let lost as WorkerLost {
                try continueWithout(lost, step: request.step, state: state)
            }
        }
    }

    private func gather(_ request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient {
        let s = request.step
        do {
            try parameters.broadcast(request, layout: plan.layout, to: weightsRecipients(step: s, state: state), messenger: messenger)
        } catch let error as TransportError {
            throw machine.workers.lost(error, step: s)
        }
        for peer in machine.workers { peer.pushes.forEach { $0.expect(step: UInt64(s)) } }
        (waitingReissues, reissuesGranted) = ([], 0)
        machine.pushState = next
        machine.gather(step: s, now: monotonicSeconds())
        parameters.expect(step: s)
        var pending = machine.workers.count
        var allPushed: Double?
        while pending > 0 || !parameters.isReduced {
            try stop.check()
            try Self.throwIfLost(try feed(.tick))
            // Workers that pushed wait for the next weights: they must hear we are alive.
            try Self.throwIfLost(try sendHeartbeatsIfDue(step: s))
            let received: (PeerIdentity, DecodedMessage)?
            if let held = machine.takeHeld() {
                received = held
            } else {
                try parameters.poll(step: s)
                sendGrantedReissues()
                var judging = false
                if pending == 0 {   // only the parameter servers' part of the step is missing
                    let pushed = allPushed ?? monotonicSeconds()
                    allPushed = pushed
                    try parameters.checkOverdue(step: s, pushedAt: pushed, now: monotonicSeconds())
                } else {
                    // Some workers are done: whether a late one's nodes go to them is judged often.
                    judging = reissuesLateNodes && pending < machine.workers.count
                    if judging { try reissueLateNodes(step: s, state: state) }
                    if !heldBack.isEmpty { try resumeCaughtUp(request, state: state) }
                }
                // The workers are heard while the servers finish the step too: a worker waiting
                // for the next weights is alive, and its heartbeats say so.
                received = try receiveFromWorkers(timeout: judging ? 0.005 : 0.2)
            }
            guard let (identity, message) = received else { continue }
            let outcome = try feed(.received(identity, message))
            try Self.throwIfLost(outcome)
            pending -= outcome.pushesCompleted
        }
        let behind = machine.stepGathered(s, now: monotonicSeconds())
        for worker in behind { balancer.fellBehind(worker.identity, secondsPerChunk: worker.secondsPerChunk) }
        try holdBack(behind.map(\.identity), step: s)
        return reduced(excluding: behind.map(\.identity))
    }

    /// The next message from a worker, waiting up to `timeout` on the workers' socket and the
    /// parameter servers' (whose messages `parameters.poll` takes).
    private func receiveFromWorkers(timeout: Double) throws -> (PeerIdentity, DecodedMessage)? {
        if parameters.transports.isEmpty { return try messenger.receive(timeout: timeout) }
        try waitForInput([messenger.transport] + parameters.transports, timeout: timeout)
        return try messenger.receive(timeout: 0)
    }

    /// Every push is in: the step's gradient, summed in the fixed tree order (leaf order = rank
    /// order = chunk order), and its timing. Workers that fell `behind` (a copy completed their
    /// push) tell nothing of their speed yet.
    private func reduced(excluding behind: [PeerIdentity]) -> StepGradient {
        let gathered = monotonicSeconds()
        let workers = machine.workers
        let timed = workers.filter { !behind.contains($0.identity) }
        stragglers.observe(timed.map { ($0.rank, $0.timing.computeSeconds, "\($0.name)") }).forEach(log)
        balancer.observe(timed.map { ($0.identity, $0.timing.computeSeconds, $0.chunks.count) })
        let pushes = workers.flatMap(\.pushes)
        var gradient = StepGradient(lossSum: 0, gradientSum: nil, tokenCount: plan.tokensPerStep, computeSeconds: 0)
        parameters.reduce(pushes, tree: tree, count: plan.layout.count, into: &gradient)
        gradient.lossSum = tree.sum(pushes.map(\.lossSum))
        // wait = the slowest worker's lag behind the fastest; compute = the fastest worker's
        // compute + this sum (the loop adds its update and calls the rest communication).
        let arrivals = workers.map(\.arrival)
        gradient.computeSeconds = (workers.map(\.timing.computeSeconds).min() ?? 0) + (monotonicSeconds() - gathered)
        gradient.waitSeconds = arrivals.max()! - arrivals.min()!
        gradient.workers = workers.map(\.timing)
        gradient.balancing = stepBalancing
        return gradient
    }

    // MARK: Between steps, end

    public func whileServing<T>(_ work: @escaping () throws -> T) throws -> T {
        try runServicing(interval: options.heartbeatInterval, work) {
            if let lost = try sendHeartbeatsIfDue(step: machine.currentStep).lost { try deferLoss(lost) }
            while let (identity, message) = try messenger.receive(timeout: 0) {
                if let lost = try feed(.received(identity, message)).lost { try deferLoss(lost) }
            }
        }
    }

    public func finish(reason: String) {
        for peer in machine.joined { try? messenger.send(.shutdown(Shutdown(reason: reason)), to: peer.identity) }
        parameters.finish(reason: reason)
        messenger.rejections.flush()
        messenger.transport.close()
    }

    // MARK: Driving the machine

    /// What the machine's actions for one event came to, for the loop that fed it.
    struct Outcome {
        var joinComplete = false
        var pushesCompleted = 0
        var lost: WorkerLost?
    }

    /// Feeds `event` to the machine and carries out its actions.
    func feed(_ event: CoordinatorMachine.Event) throws -> Outcome {
        var outcome = Outcome()
        for action in machine.handle(event, now: monotonicSeconds()) {
            switch action {
            case .reply(let message, let peer): messenger.reply(message, to: peer)
            case .reject(let peer, let reason): messenger.reject(from: peer, reason)
            case .log(let line): log(line)
            case .joinComplete: outcome.joinComplete = true
            case .pushComplete: outcome.pushesCompleted += 1
            case .lost(let lost): outcome.lost = outcome.lost ?? lost
            case .lateTiming(let peer, let secondsPerChunk): balancer.observeLate(peer, secondsPerChunk: secondsPerChunk)
            case .fail(let error): throw error
            }
        }
        return outcome
    }

    static func throwIfLost(_ outcome: Outcome) throws {
        if let lost = outcome.lost { throw lost }
    }

    /// One heartbeat per interval to every joined worker (and the parameter servers). A worker
    /// found gone is an event for the machine (a closed connection is noticed within an
    /// interval); a full queue is slowness, not death: silence is judged by the machine.
    func sendHeartbeatsIfDue(step: Int) throws -> Outcome {
        parameters.sendHeartbeatsIfDue(step: step)
        var outcome = Outcome()
        guard heartbeats.isDue() else { return outcome }
        for (rank, peer) in machine.joined.enumerated() where !lostBetweenSteps.contains(where: { $0.identity == peer.identity }) {
            do {
                try messenger.send(.heartbeat(Heartbeat(rank: UInt32(rank), step: UInt64(step))), to: peer.identity, waiting: false)
            } catch TransportError.peerGone(let gone) {
                outcome.lost = try outcome.lost ?? feed(.peerGone(gone)).lost
            } catch TransportError.sendTimedOut {
                continue
            }
        }
        return outcome
    }
}
