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
    private let stop: StopRequest
    let log: (String) -> Void
    let messenger: ServerMessenger
    /// Workers that said hello, in join order, and (once all joined) their assignments.
    var joined: [(identity: PeerIdentity, hello: Hello)] = []
    var workers: [WorkerPeer] = []
    var tree: ReductionTree!
    /// Workers found gone while evaluating or checkpointing; dropped at the next step.
    var lostBetweenSteps: [WorkerLost] = []
    private var lastHeartbeatSent = 0.0
    private var stragglers = StragglerWatch()
    /// The step being gathered or last gathered (heartbeats carry it).
    private var currentStep = 0

    /// The limits every message from a worker must keep: one gradient plus its state.
    public static func decodeLimits(_ plan: RunPlan) -> DecodeLimits { DecodeLimits(plan: plan) }

    public init(plan: RunPlan, corpus: Corpus, options: CoordinatorOptions, transport: ServerTransport,
                stop: StopRequest, log: @escaping (String) -> Void) throws {
        guard options.workers >= 1, options.workers <= plan.chunkCount else {
            throw ClusterError.tooFewChunks(workers: options.workers, chunks: plan.chunkCount)
        }
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
    public var mode: String { "coordinator \(endpoint), \(options.workers) worker(s)" }

    // MARK: Join

    /// Waits for W workers with the right fingerprint, assigns chunks in join order and
    /// welcomes each with its streams and their carried state.
    public func start(step: Int, state: CarriedState) throws {
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
                messenger.reject(from: identity, "\(message.kind.rawValue) before hello")
                continue
            }
            if let refusal = Fingerprint.refusal(of: hello, expected: fingerprint, joinToken: options.joinToken) {
                log("refused worker on \(hello.host) (pid \(hello.pid)): \(refusal)")
                try? messenger.send(.error(WireErrorMessage(message: refusal)), to: identity)
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
        do {
            try messenger.broadcastWeights(step: s, resetState: request.stepInEpoch == 0, parameters: request.parameters,
                                           layout: plan.layout, to: workers.map(\.identity))
        } catch let error as TransportError {
            throw workers.lost(error, step: s)
        }
        for peer in workers {
            peer.pushes.forEach { $0.expect(step: UInt64(s)) }
            peer.reportedSlow = false
        }
        let gatherStart = monotonicSeconds()
        var pending = workers.count
        while pending > 0 {
            try stop.check()
            try checkHeartbeats(step: s, since: gatherStart)
            do {
                // Workers that pushed wait for the next weights: they must hear we are alive.
                try sendHeartbeatsIfDue(step: s)
            } catch let error as TransportError {
                throw workers.lost(error, step: s)
            }
            guard let (identity, message) = try messenger.receive(timeout: 0.2) else { continue }
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
        stragglers.observe(workers.map { ($0.rank, $0.timing.computeSeconds, "\($0.name)") }).forEach(log)
        // Leaf order = rank order = chunk order.
        let pushes = workers.flatMap(\.pushes)
        tree.sum(pushes.map { $0.gradient.baseAddress! }, count: plan.layout.count, threads: 1)
        let lossSum = tree.sum(pushes.map(\.lossSum))
        // wait = the slowest worker's lag behind the fastest; compute = the fastest worker's
        // compute + this sum (the loop adds its update and calls the rest communication).
        let arrivals = workers.map(\.arrival)
        return StepGradient(lossSum: lossSum, gradientSum: pushes[0].gradient.baseAddress!,
                            tokenCount: plan.tokensPerStep,
                            computeSeconds: (workers.map(\.timing.computeSeconds).min() ?? 0) + (monotonicSeconds() - gathered),
                            waitSeconds: arrivals.max()! - arrivals.min()!, workers: workers.map(\.timing))
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
                messenger.reject(from: identity, "unexpected \(message.kind.rawValue) between steps")
            }
        }
    }

    public func finish(reason: String) {
        for peer in joined { try? messenger.send(.shutdown(Shutdown(reason: reason)), to: peer.identity) }
        messenger.rejections.flush()
        messenger.transport.close()
    }

    /// One heartbeat per interval to every joined worker; a worker that is gone throws
    /// `TransportError.peerGone` (a closed connection is noticed within an interval).
    func sendHeartbeatsIfDue(step: Int) throws {
        guard monotonicSeconds() - lastHeartbeatSent >= options.heartbeatInterval else { return }
        lastHeartbeatSent = monotonicSeconds()
        for (rank, peer) in joined.enumerated() where !lostBetweenSteps.contains(where: { $0.identity == peer.identity }) {
            do {
                try messenger.send(.heartbeat(Heartbeat(rank: UInt32(rank), step: UInt64(step))), to: peer.identity,
                                   waiting: false)
            } catch TransportError.sendTimedOut {
                continue   // a full queue is slowness, not death; silence is judged by checkHeartbeats
            }
        }
    }

    /// Throws when a worker that has not pushed yet has been silent too long (dead); says once
    /// per step when one is still computing after a heartbeat timeout (slow, but alive).
    private func checkHeartbeats(step s: Int, since start: Double) throws {
        let t = monotonicSeconds()
        for peer in workers where !peer.isComplete {
            if t - peer.lastSeen > options.heartbeatTimeout {
                throw WorkerLost(identity: peer.identity, error: .workerFailed("\(peer.name) stopped answering at step \(s + 1) (no message for \(ClusterError.format(options.heartbeatTimeout)) s)"))
            }
            if !peer.reportedSlow, t - start > options.heartbeatTimeout {
                peer.reportedSlow = true
                log("\(peer.name) is slow: no gradient for step \(s + 1) after \(ClusterError.format((t - start).rounded())) s, but its heartbeats arrive")
            }
        }
    }
}
