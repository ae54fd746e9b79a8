import Foundation
import Recurrent
import Training
import Wire

/// The parameter server as a `GradientSource` of the training loop (ps-lite's server, one
/// request type): join W workers and give each a contiguous block of whole gradient chunks;
/// then per step broadcast the weights, gather one push per worker, and sum the workers'
/// blocks through the fixed `ReductionTree`. The loop does the rest (clip, optimizer,
/// checkpoints). A worker that fails, disconnects or stays silent past the heartbeat
/// timeout ends the run with an error naming it.
public final class Coordinator: GradientSource {
    public let plan: RunPlan
    public let options: CoordinatorOptions
    let fingerprint: Hello
    let stop: StopRequest
    let log: (String) -> Void
    let messenger: ServerMessenger
    /// Workers that said hello, in join order, and (once all joined) their assignments.
    var joined: [(identity: PeerIdentity, hello: Hello)] = []
    var workers: [WorkerPeer] = []
    var tree: ReductionTree!
    /// Workers found gone while evaluating or checkpointing; dropped at the next step.
    var lostBetweenSteps: [WorkerLost] = []
    private lazy var heartbeats = HeartbeatSchedule(timeout: options.heartbeatTimeout)
    private var stragglers = StragglerWatch()
    /// The longest compute any worker reported for a step so far (seconds): the stall bound
    /// scales with it.
    private var longestCompute = 0.0
    /// The step being gathered or last gathered (heartbeats carry it).
    private var currentStep = 0
    /// Sharded parameter servers (`--shards S`, S ≥ 2): they hold the weights and the
    /// gradient; this coordinator sequences the steps, combines their norm blocks and keeps
    /// membership, evaluation and checkpoints. Nil with one server (this process).
    let shards: ShardLinks?
    /// Sharded: the step whose state the local update last fetched.
    private var synchronizedStep: Int?
    /// Sharded: pushes that arrived between steps. The shards broadcast the next weights as
    /// soon as they have applied a step, so workers may push step s+1 while this coordinator
    /// still evaluates or checkpoints step s; the next gather takes these first. Dropped at a
    /// new assignment (the step is computed again). At most `maximumHeldPushes`.
    var heldPushes: [(PeerIdentity, DecodedMessage)] = []
    var maximumHeldPushes: Int { 4 * plan.chunkCount + 8 }
    private var shardsAreSetUp = false

    /// The limits every message from a worker must keep: one gradient plus its state.
    public static func decodeLimits(_ plan: RunPlan) -> DecodeLimits { DecodeLimits(plan: plan) }

    public init(plan: RunPlan, corpus: Corpus, options: CoordinatorOptions, transport: ServerTransport,
                stop: StopRequest, shards: ShardConnection? = nil, log: @escaping (String) -> Void) throws {
        guard options.workers >= 1, options.workers <= plan.chunkCount else {
            throw ClusterError.tooFewChunks(workers: options.workers, chunks: plan.chunkCount)
        }
        self.shards = try shards.map { try ShardLinks($0, plan: plan, heartbeatTimeout: options.heartbeatTimeout, log: log) }
        self.plan = plan
        self.options = options
        self.stop = stop
        self.log = log
        fingerprint = Fingerprint.hello(corpus: corpus, threads: 0)
        messenger = ServerMessenger(transport: transport, limits: Self.decodeLimits(plan), log: log)
        messenger.describe = { [unowned self] identity in
            workers.first { $0.identity == identity }?.name ?? ServerMessenger.anonymous(identity)
        }
    }

    public var endpoint: String { messenger.transport.endpoint }
    public var mode: String {
        "coordinator \(endpoint), \(options.workers) worker(s)" + (shards.map { ", \($0.count) parameter shards" } ?? "")
    }

    // MARK: Join

    /// Waits for W workers with the right fingerprint, assigns chunks in join order and
    /// welcomes each with its streams and their carried state.
    public func start(step: Int, state: CarriedState) throws {
        if let shards {
            try shards.setUp(plan: plan, step: step, workerCount: options.workers, joinToken: options.joinToken, stop: stop)
            shardsAreSetUp = true
        }
        let deadline = monotonicSeconds() + options.joinTimeout
        log("waiting for \(options.workers) worker(s) on \(endpoint)")
        var lastJoin = monotonicSeconds()
        while joined.count < options.workers {
            if options.minWorkers != nil, joined.count >= options.requiredWorkers,
               monotonicSeconds() - lastJoin >= options.joinSettle {
                log("starting with \(joined.count) of \(options.workers) worker(s) (at least \(options.requiredWorkers) required); the others join at a step boundary")
                break
            }
            try stop.check()
            guard monotonicSeconds() < deadline else {
                throw ClusterError.joinTimeout(joined: joined.count, expected: options.workers, seconds: options.joinTimeout)
            }
            do {
                try sendHeartbeatsIfDue(step: step)
            } catch TransportError.peerGone(let gone) {
                let left = joined.first { $0.identity == gone }!.hello
                joined.removeAll { $0.identity == gone }
                log("worker on \(left.host) (pid \(left.pid)) left before the run started (\(joined.count)/\(options.workers))")
            }
            guard let (identity, message) = try messenger.receive(timeout: 0.2) else { continue }
            if joined.contains(where: { $0.identity == identity }) {
                if case .heartbeat = message { continue }
                messenger.reject(from: identity, "unexpected \(message.kind.rawValue) while waiting for workers")
                continue
            }
            guard case .hello(let hello) = message else {
                // A worker of this run before a restart: it answers with its hello at once.
                messenger.reject(from: identity, "\(message.kind.rawValue) before hello (asked for its hello)")
                messenger.reply(.error(.helloFirst), to: identity)
                continue
            }
            if let refusal = Fingerprint.refusal(of: hello, expected: fingerprint, joinToken: options.joinToken) {
                messenger.reject(from: identity, "refused worker on \(hello.host) (pid \(hello.pid)): \(refusal)")
                messenger.reply(.error(WireErrorMessage(message: refusal)), to: identity)
                continue
            }
            joined.append((identity, hello))
            lastJoin = monotonicSeconds()
            log("worker \(joined.count - 1) (host \(hello.host), pid \(hello.pid)) joined with \(hello.threads) thread(s) (\(joined.count)/\(options.workers))")
        }
        try assign(step: step, state: state)
    }

    // MARK: Step

    /// Broadcasts the weights, gathers every worker's push (its state lands in `next`) and
    /// sums the worker blocks in the fixed tree order. A lost worker is dropped and the step
    /// computed again by the others while at least `minWorkers` remain (exact: any split of
    /// the chunks gives the same sum).
    public func gradient(for request: StepRequest, state: CarriedState, next: CarriedState) throws -> StepGradient {
        for lost in lostBetweenSteps { try continueWithout(lost, step: request.step, state: state) }
        lostBetweenSteps = []
        if workers.count != joined.count {   // workers joined since the last step
            do {
                try assign(step: request.step, state: state)
            } catch let lost as WorkerLost {
                try continueWithout(lost, step: request.step, state: state)
            }
        }
        while true {
            do {
                return try gather(request, next: next)
            } catch let lost as WorkerLost {
                try continueWithout(lost, step: request.step, state: state)
            }
        }
    }

    private func gather(_ request: StepRequest, next: CarriedState) throws -> StepGradient {
        let s = request.step
        currentStep = s
        // Sharded: the shards broadcast the weights themselves, after each update and after
        // each assignment (`assign`).
        if shards == nil {
            do {
                try messenger.broadcastWeights(step: s, resetState: request.stepInEpoch == 0, parameters: request.parameters,
                                               layout: plan.layout, to: workers.map(\.identity))
            } catch let error as TransportError {
                throw workers.lost(error, step: s)
            }
        }
        for peer in workers {
            peer.pushes.forEach { $0.expect(step: UInt64(s)) }
            peer.reportedSlow = false
        }
        let gatherStart = monotonicSeconds()
        var pending = workers.count
        // Sharded: each shard's Σg² of its norm blocks for this step.
        var squares: [[Double]?] = Array(repeating: nil, count: shards?.count ?? 0)
        var allPushed: Double?
        while pending > 0 || squares.contains(where: { $0 == nil }) {
            try stop.check()
            try checkHeartbeats(step: s, since: gatherStart)
            do {
                // Workers that pushed wait for the next weights: they must hear we are alive.
                try sendHeartbeatsIfDue(step: s)
            } catch let error as TransportError {
                throw workers.lost(error, step: s)
            }
            let received: (PeerIdentity, DecodedMessage)?
            if !heldPushes.isEmpty {
                received = heldPushes.removeFirst()
            } else if let shards {
                try takeBlockSquares(from: shards, step: s, into: &squares)
                if pending == 0 {
                    let pushed = allPushed ?? monotonicSeconds()
                    allPushed = pushed
                    if monotonicSeconds() - pushed > options.heartbeatTimeout, let k = squares.firstIndex(where: { $0 == nil }) {
                        throw ClusterError.shardLost("\(shards.name(k)) sent no gradient norm for step \(s + 1) within \(ClusterError.format(options.heartbeatTimeout)) s of the last push")
                    }
                    try waitForInput(shards.transports, timeout: 0.2)
                    continue
                }
                try waitForInput([messenger.transport] + shards.transports, timeout: 0.2)
                received = try messenger.receive(timeout: 0)
            } else {
                received = try messenger.receive(timeout: 0.2)
            }
            guard let (identity, message) = received else { continue }
            guard let peer = workers.first(where: { $0.identity == identity }) else {
                admitOrReject(identity, message, step: s)
                continue
            }
            peer.lastSeen = monotonicSeconds()
            switch message {
            case .heartbeat:
                continue
            case .gradientPush(let push):
                do {
                    guard let assembler = peer.assembler(for: push) else {
                        throw PushRejection.notItsChunks(begin: push.chunkBegin, end: push.chunkEnd)
                    }
                    if try assembler.accept(push, state: next), peer.isComplete {
                        peer.arrival = monotonicSeconds()
                        pending -= 1
                    }
                } catch {
                    messenger.reject(from: identity, "\(error)")
                }
            case .error(let error):
                throw WorkerLost(identity: identity, error: .workerFailed("\(peer.name) failed at step \(s + 1): \(error.message)"))
            default:
                messenger.reject(from: identity, "unexpected \(message.kind.rawValue) during step \(s + 1)")
            }
        }
        let gathered = monotonicSeconds()
        longestCompute = max(longestCompute, workers.map(\.timing.computeSeconds).max() ?? 0)
        stragglers.observe(workers.map { ($0.rank, $0.timing.computeSeconds, "\($0.name)") }).forEach(log)
        // Leaf order = rank order = chunk order.
        let pushes = workers.flatMap(\.pushes)
        if shards == nil { tree.sum(pushes.map { $0.gradient.baseAddress! }, count: plan.layout.count, threads: 1) }
        let lossSum = tree.sum(pushes.map(\.lossSum))
        // wait = the slowest worker's lag behind the fastest; compute = the fastest worker's
        // compute + this sum (the loop adds its update and calls the rest communication).
        let arrivals = workers.map(\.arrival)
        var gradient = StepGradient(lossSum: lossSum, gradientSum: shards == nil ? pushes[0].gradient.baseAddress! : nil,
                                    tokenCount: plan.tokensPerStep,
                                    computeSeconds: (workers.map(\.timing.computeSeconds).min() ?? 0) + (monotonicSeconds() - gathered),
                                    waitSeconds: arrivals.max()! - arrivals.min()!, workers: workers.map(\.timing))
        gradient.blockSquares = squares.flatMap { $0 ?? [] }
        return gradient
    }

    /// The shards' reports of their norm blocks for step `s`; anything else is dropped.
    private func takeBlockSquares(from shards: ShardLinks, step s: Int, into squares: inout [[Double]?]) throws {
        for (k, message) in try shards.poll() {
            guard case .shardReport(let report) = message, report.kind == .blockSquares, report.step == UInt64(s),
                  report.blockSquares.count == shards.partition.shardBlocks[k].count else {
                log("ignored \(message.kind.rawValue) from \(shards.name(k)) while gathering step \(s + 1)")
                continue
            }
            squares[k] = report.blockSquares
        }
    }

    // MARK: Sharded update

    /// Sharded: the global norm from every shard's blocks, in block order; each shard clips its
    /// range by it, takes the optimizer step and broadcasts the next weights. A norm that is
    /// not finite is sent nowhere: nothing changes and the loop stops the run.
    public func apply(_ g: StepGradient, to update: ParameterUpdate, step: Int) throws -> ParameterUpdate.Report {
        guard let shards else { return update.apply(gradientSum: g.gradientSum!, tokenCount: g.tokenCount, step: step) }
        let norm = GradientClipping.norm(blockSquares: g.blockSquares)
        let rate = update.schedule.rate(atStep: step)
        guard norm.isFinite else { return .init(gradientNorm: norm, learningRate: rate) }
        let next = step + 1
        try shards.send(ShardCommand(kind: .apply, step: UInt64(step), norm: norm, broadcastNext: next < plan.config.steps,
                                     resetState: plan.position(globalStep: next).stepInEpoch == 0))
        return .init(gradientNorm: norm, learningRate: rate)
    }

    /// Sharded: fetches the weights and optimizer state of the last completed step from the
    /// shards into `update` (once per step).
    public func synchronize(_ update: ParameterUpdate) throws {
        guard let shards, shardsAreSetUp, synchronizedStep != currentStep + 1 else { return }
        try shards.fetchState(step: currentStep, stop: stop)
        synchronizedStep = currentStep + 1
    }

    // MARK: Between steps, liveness, end

    public func whileServing<T>(_ work: @escaping () throws -> T) throws -> T {
        try runServicing(interval: options.heartbeatInterval, work) {
            do {
                try sendHeartbeatsIfDue(step: currentStep)
            } catch let error as TransportError {
                try deferLoss(workers.lost(error, step: currentStep))
            }
            while let (identity, message) = try messenger.receive(timeout: 0) {
                guard let peer = workers.first(where: { $0.identity == identity }) else {
                    admitOrReject(identity, message, step: currentStep)
                    continue
                }
                peer.lastSeen = monotonicSeconds()
                if case .heartbeat = message { continue }
                if case .error(let e) = message { throw ClusterError.workerFailed("\(peer.name) failed: \(e.message)") }
                if case .gradientPush = message, shards != nil, heldPushes.count < maximumHeldPushes {
                    heldPushes.append((identity, message))
                    continue
                }
                messenger.reject(from: identity, "unexpected \(message.kind.rawValue) between steps")
            }
        }
    }

    public func finish(reason: String) {
        for peer in joined { try? messenger.send(.shutdown(Shutdown(reason: reason)), to: peer.identity) }
        shards?.shutdown(reason: reason)
        messenger.rejections.flush()
        messenger.transport.close()
    }

    /// One heartbeat per interval to every joined worker; a worker that is gone throws
    /// `TransportError.peerGone` (a closed connection is noticed within an interval).
    func sendHeartbeatsIfDue(step: Int) throws {
        shards?.sendHeartbeatsIfDue(step: step)
        guard heartbeats.isDue() else { return }
        for (rank, peer) in joined.enumerated() where !lostBetweenSteps.contains(where: { $0.identity == peer.identity }) {
            do {
                try messenger.send(.heartbeat(Heartbeat(rank: UInt32(rank), step: UInt64(step))), to: peer.identity,
                                   waiting: false)
            } catch TransportError.sendTimedOut {
                continue   // a full queue is slowness, not death; silence is judged by checkHeartbeats
            }
        }
    }

    /// How long a worker that heartbeats may go without completing its push of a step before
    /// it counts as lost: 4 heartbeat timeouts, or 10 times the longest step compute seen so
    /// far when that is more (a hung compute thread keeps heartbeating; a slow node does not
    /// take 10 times its own worst step).
    var stallLimit: Double { max(4 * options.heartbeatTimeout, 10 * longestCompute) }

    /// Throws when a worker that has not pushed yet has been silent too long (dead) or has
    /// made no progress past `stallLimit` (hung); says once per step when one is still
    /// computing after a heartbeat timeout (slow, but alive).
    private func checkHeartbeats(step s: Int, since start: Double) throws {
        let t = monotonicSeconds()
        for peer in workers where !peer.isComplete {
            if t - peer.lastSeen > options.heartbeatTimeout {
                throw WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) stopped answering at step \(s + 1) (no message for \(ClusterError.format(options.heartbeatTimeout)) s)"))
            }
            if t - start > stallLimit {
                throw WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) made no progress on step \(s + 1) for \(ClusterError.format((t - start).rounded())) s though its heartbeats arrive (hung?)"))
            }
            if !peer.reportedSlow, t - start > options.heartbeatTimeout {
                peer.reportedSlow = true
                log("\(peer.name) is slow: no gradient for step \(s + 1) after \(ClusterError.format((t - start).rounded())) s, but its heartbeats arrive")
            }
        }
    }
}
