import Foundation
import Recurrent
import Training
import Wire

/// The worker's protocol as a state machine: events in, actions out, no sockets, clocks or
/// threads (`ClientDriver` runs it). States:
///
///     joining ──tick: Hello──▶ awaitingWelcome ──Welcome──▶ working(a)
///     working(a) ──the weights of a.step all in──▶ computing(a)
///     computing(a) ──compute finished: pushes──▶ working(a at step + 1)
///     working(a) ──Reissue of step − 1 (a late worker's node)──▶ computingReissue(a, node)
///     computingReissue(a, node) ──compute finished: the node's pushes──▶ working(a)
///     working ──Welcome (a worker was lost: chunks move)──▶ working(new a)
///     working ──coordinator silent (reconnect timeout > 0)──▶ rejoining(deadline)
///     working ──Error "hello first" (the coordinator restarted)──▶ rejoining(deadline)
///     rejoining ──Welcome──▶ working(new a);  past the deadline ──▶ failed
///     working ──Shutdown──▶ finished
///     any ──stop, parent gone, Error, a broken welcome or weights──▶ failed (finished)
///
/// In awaitingWelcome and rejoining, an Error "hello first" (the hello is on its way, or was
/// lost) sends the hello again, at most once a second. The first join fails once the
/// coordinator was silent for the heartbeat timeout (and at least a second): "unreachable"
/// when it never said a word. While computing the driver reads nothing: messages wait in
/// the socket. Where the weights come from and the gradient goes is the assignment's
/// `ParameterRoute`, the same steps with or without shards.
struct WorkerMachine {
    enum State {
        /// Nothing sent yet.
        case joining
        /// The hello left at `since`; `heard`: the coordinator has said something since.
        case awaitingWelcome(since: Double, heard: Bool)
        /// Waiting for the weights of `a.step`.
        case working(WorkerAssignment)
        /// The driver's compute thread runs `a.step`.
        case computing(WorkerAssignment)
        /// The driver's compute thread runs a node of another worker's block, re-issued by the
        /// coordinator, with the weights of the step this worker just pushed.
        case computingReissue(WorkerAssignment, ReissuedNode)
        /// The coordinator was lost or restarted: the hello went again; gives up at `deadline`.
        case rejoining(deadline: Double)
        /// The run is over, or the worker failed: no event is taken any more.
        case finished
    }

    /// What a worker brings to every assignment.
    struct Setup {
        var options: WorkerOptions
        var corpus: Corpus
        /// This worker's hello (fingerprint, threads, join token).
        var hello: Hello
        var pid: Int
    }

    let setup: Setup
    private(set) var state = State.joining
    /// The rank of the latest assignment (nil before the first welcome).
    private(set) var rank: Int?
    private var lastHello = -Double.infinity
    /// The pushes that just left were a re-issued node's.
    private var reissueSent = false
    private var actions: [ClientAction] = []

    init(setup: Setup) { self.setup = setup }

    private var options: WorkerOptions { setup.options }

    var assignment: WorkerAssignment? {
        switch state {
        case .working(let a), .computing(let a), .computingReissue(let a, _): return a
        default: return nil
        }
    }

    /// What the driver beats to the coordinator: only once it has an assignment (before
    /// that the coordinator does not know this worker's rank).
    var heartbeat: Heartbeat? {
        assignment.map { Heartbeat(rank: UInt32($0.rank), step: $0.step) }
    }

    /// After how many seconds of the coordinator's silence the driver says so; nil: not
    /// judged (not joined yet; rejoining waits for its deadline; computing reads nothing).
    var silenceLimit: Double? {
        switch state {
        case .awaitingWelcome, .working: return options.heartbeatTimeout
        default: return nil
        }
    }

    mutating func handle(_ event: ClientEvent, now: Double) -> [ClientAction] {
        actions = []
        if case .finished = state { return [] }
        do {
            try take(event, now: now)
        } catch let stopped as StopRequest.Stopped {
            stop(stopped)
        } catch {
            end(.fail(error))
        }
        return actions
    }

    private mutating func take(_ event: ClientEvent, now: Double) throws {
        switch event {
        case .tick:
            try tick(now: now)
        case .stopRequested(let stopped):
            throw stopped
        case .parentGone(let pid):
            actions.append(.abandonCoordinator)
            throw ClusterError.coordinatorExited(pid: pid)
        case .coordinatorSilent:
            try coordinatorSilent(now: now)
        case .received(let sender, let message):
            try receive(message, from: sender, now: now)
        case .earlyPartReady(let slices):
            guard case .computing(let a) = state else { return }
            actions += a.route.earlyPushes(step: a.step, slices: slices, assignment: a)
        case .computeFinished(let startedAt):
            if case .computingReissue(let a, let node) = state {
                actions += node.pushes(route: a.route, computeSeconds: now - startedAt)
                state = .working(a)
                reissueSent = true
                return
            }
            guard case .computing(let a) = state else { return }
            computed(a, from: startedAt, now: now)
        case .gradientSent:
            // A re-issued node's pushes are not this worker's step: its times stay.
            if !reissueSent { assignment?.times.sent(at: now) }
            reissueSent = false
        }
    }

    // MARK: Joining

    private mutating func tick(now: Double) throws {
        switch state {
        case .joining:
            sendHello(now: now)
            state = .awaitingWelcome(since: now, heard: false)
        case .rejoining(let deadline) where now > deadline:
            throw ClusterError.coordinatorLost(endpoint: options.endpoint, seconds: options.heartbeatTimeout + options.reconnectTimeout,
                                               encrypted: options.encrypted)
        default:
            return
        }
    }

    private mutating func sendHello(now: Double) {
        lastHello = now
        actions.append(.send(.hello(setup.hello)))
    }

    private mutating func coordinatorSilent(now: Double) throws {
        switch state {
        case .awaitingWelcome(let since, let heard) where now - since > max(options.heartbeatTimeout, 1):
            guard heard else {
                throw ClusterError.coordinatorUnreachable(endpoint: options.endpoint, seconds: options.heartbeatTimeout,
                                                          encrypted: options.encrypted)
            }
            throw lost
        case .working(let a):
            guard options.reconnectTimeout > 0 else { throw lost }
            actions.append(.log("worker \(a.rank): coordinator \(options.endpoint) stopped answering (no message for \(ClusterError.format(options.heartbeatTimeout)) s); waiting up to \(ClusterError.format(options.reconnectTimeout)) s for one at that address"))
            rejoin(deadline: now + options.reconnectTimeout, now: now)
        default:
            return
        }
    }

    private var lost: ClusterError {
        .coordinatorLost(endpoint: options.endpoint, seconds: options.heartbeatTimeout, encrypted: options.encrypted)
    }

    /// Leaves the assignment (and its shards) and says hello again.
    private mutating func rejoin(deadline: Double, now: Double) {
        actions.append(.closeShardLinks)
        sendHello(now: now)
        state = .rejoining(deadline: deadline)
    }

    // MARK: Messages

    private mutating func receive(_ message: DecodedMessage, from sender: Sender, now: Double) throws {
        switch (state, sender) {
        case (.awaitingWelcome(let since, _), .coordinator):
            state = .awaitingWelcome(since: since, heard: true)
            try beforeWelcome(message, now: now)
        case (.rejoining, .coordinator):
            try beforeWelcome(message, now: now)
        case (.working(let a), _):
            try working(a, message, from: sender, now: now)
        case (.computing(let a), _), (.computingReissue(let a, _), _):
            actions.append(.log("worker \(a.rank): ignored \(message.kind.rawValue) from \(name(sender)) while computing step \(oneBased(a.step))"))
        default:
            actions.append(.log("ignored unexpected \(message.kind.rawValue) from \(name(sender)) before welcome"))
        }
    }

    private func name(_ sender: Sender) -> String {
        switch sender {
        case .coordinator: return "the coordinator"
        case .shard(let k): return "shard \(k)"
        }
    }

    /// The coordinator's messages while (re)joining.
    private mutating func beforeWelcome(_ message: DecodedMessage, now: Double) throws {
        switch message {
        case .welcome(let welcome):
            if case .rejoining = state, let rank {
                actions.append(.log("worker \(rank): rejoined at step \(oneBased(welcome.step))"))
            }
            try begin(welcome, now: now)
        case .error(let error) where error.asksForHello:
            if now - lastHello >= 1 { sendHello(now: now) }
        case .error(let error):
            throw ClusterError.refused(error.message)
        case .heartbeat:
            return
        case .shutdown(let shutdown):
            throw StopRequest.Stopped(reason: "coordinator ended the run before it started: \(shutdown.reason)")
        default:
            actions.append(.log("ignored unexpected \(message.kind.rawValue) before welcome"))
        }
    }

    /// Messages while working: from the coordinator the run's course, from a shard its
    /// weights; the weights of the awaited step, wherever they come from, go to the route.
    private mutating func working(_ a: WorkerAssignment, _ message: DecodedMessage, from sender: Sender, now: Double) throws {
        switch (message, sender) {
        case (.heartbeat, _):
            return
        case (.weights(let weights), _):
            try take(weights, from: sender, into: a, now: now)
        case (.error(let error), .coordinator) where error.asksForHello:
            actions.append(.log("worker \(a.rank): the coordinator at \(options.endpoint) asks for a hello (it restarted); joining again"))
            rejoin(deadline: now + max(options.reconnectTimeout, options.heartbeatTimeout), now: now)
        case (.error(let error), _):
            throw ClusterError.refused(error.message)
        case (.shutdown(let shutdown), .coordinator):
            actions.append(.log("worker \(a.rank): coordinator ended the run: \(shutdown.reason)"))
            // Nothing this worker still has queued matters now (a late push of a step it fell
            // behind on): drop it rather than linger at exit for a coordinator that is gone.
            actions.append(.abandonCoordinator)
            end(.finish)
        case (.reissue(let reissue), .coordinator):
            try compute(reissue, in: a)
        case (.welcome(let next), .coordinator):
            actions.append(.log("worker \(a.rank): new assignment from step \(oneBased(next.step)): streams \(next.streamBegin)..<\(next.streamEnd)"))
            try begin(next, now: now)
        case (_, .coordinator):
            actions.append(.log("worker \(a.rank): ignored unexpected \(message.kind.rawValue)"))
        case (_, .shard(let k)):
            actions.append(.log("worker \(a.rank): ignored unexpected \(message.kind.rawValue) from shard \(k)"))
        }
    }

    // MARK: Assignments and steps

    /// A welcome: a new assignment, its route opened.
    private mutating func begin(_ welcome: Welcome, now: Double) throws {
        let a = try WorkerAssignment(welcome: welcome, corpus: setup.corpus, options: options)
        rank = a.rank
        state = .working(a)
        actions += [
            .limit(DecodeLimits(plan: a.plan)),   // a later Welcome carries state too
            .log("worker \(a.rank) of \(a.workerCount): streams \(a.streams.lowerBound)..<\(a.streams.upperBound), \(a.engine.threads) thread(s), from step \(a.step + 1), kernels \(KernelLevel.current)"),
        ]
        actions += a.route.open(hello: setup.hello)
    }

    /// Weights of the awaited step go to the route; once they are all in (and finite) the
    /// step is computed.
    private mutating func take(_ weights: DecodedWeights, from sender: Sender, into a: WorkerAssignment, now: Double) throws {
        guard weights.step == a.step else {
            actions.append(.log("worker \(a.rank): rejected weights for step \(oneBased(weights.step)), expected step \(oneBased(a.step))"))
            return
        }
        guard case .complete(let resetState) = try a.route.take(weights, from: sender, into: a.parameters) else { return }
        // Weights that are not finite (a broken or hostile coordinator) are never computed
        // on: the gradient pushed back would be NaN too.
        guard allFinite(a.parameters.baseAddress!, count: a.parameters.count) else {
            throw ClusterError.protocolViolation("weights for step \(oneBased(weights.step)) hold values that are not finite")
        }
        if resetState { a.state.reset() }
        a.weightsStep = a.step
        a.times.weightsComplete(at: now)
        state = .computing(a)
        actions.append(.startCompute(ComputeJob(assignment: a, stepInEpoch: a.plan.position(globalStep: Int(a.step)).stepInEpoch)))
    }

    /// A late worker's node of the step this worker just pushed, computed with that step's
    /// weights (still in `parameters`: the next step's come only after the step is complete).
    /// One for an older step (the step ended before it was read) is dropped, and so is one
    /// that comes when some shards' weights of the next step are in (the step is over).
    private mutating func compute(_ reissue: Reissue, in a: WorkerAssignment) throws {
        guard reissue.step + 1 == a.step, a.weightsStep == reissue.step, !a.route.isTakingWeights else {
            actions.append(.log("worker \(a.rank): dropped the reissue of chunks \(reissue.chunkBegin)..<\(reissue.chunkEnd) for step \(oneBased(reissue.step)) (at step \(oneBased(a.step)))"))
            return
        }
        let node = try ReissuedNode(reissue, assignment: a, options: options)
        state = .computingReissue(a, node)
        actions.append(.startCompute(ComputeJob(assignment: a, stepInEpoch: a.plan.position(globalStep: Int(node.step)).stepInEpoch,
                                                reissued: node)))
    }

    /// The step is computed: what the route sends of the gradient, then each node's push to
    /// the coordinator with its loss, tokens and carried state. One push per reduction-tree
    /// node the block covers.
    private mutating func computed(_ a: WorkerAssignment, from startedAt: Double, now: Double) {
        a.times.computed(from: startedAt, to: now)
        actions += a.route.restPushes(step: a.step, assignment: a)
        actions += a.finalPushes()
        a.step += 1
        state = .working(a)
    }

    // MARK: Ending

    /// A stop request (signal) is reported to the coordinator before the worker exits, so the
    /// run ends at once.
    private mutating func stop(_ stopped: StopRequest.Stopped) {
        let name = rank.map { "worker \($0)" } ?? "worker"
        actions.append(.send(.error(WireErrorMessage(message: "\(name) (pid \(setup.pid)) stopped: \(stopped.reason)")), required: false))
        end(.fail(stopped))
    }

    private mutating func end(_ action: ClientAction) {
        actions.append(action)
        state = .finished
    }
}
