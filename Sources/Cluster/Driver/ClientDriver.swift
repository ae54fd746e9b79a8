import Foundation
import Training
import Wire

/// Runs the worker's role (`WorkerMachine`) over its links: owns the coordinator's and the
/// shards' transports (`ClientLinks`), the clock, the heartbeats, the silence check
/// (`Liveness`), the parent-process check and the compute thread, and carries out the role's
/// actions. One loop:
///
///     stop requested? → parent gone? → tick → heartbeat if due → coordinator silent? →
///     wait up to 0.2 s for a message → the role's actions for each event
///
/// A `startCompute` runs the engine on its own thread; this thread beats, checks the parent
/// and sends the early part meanwhile, reading no message (they wait in the socket, and the
/// coordinator's silence counts again from the step's push).
final class ClientDriver {
    private(set) var machine: WorkerMachine
    let links: ClientLinks
    private let stop: StopRequest
    private let parentProcess: pid_t?
    private var liveness = Liveness()
    private var heartbeats: HeartbeatSchedule
    private let clock: () -> Double
    private let log: (String) -> Void
    private var stopDelivered = false
    /// Liveness's name for the coordinator (a client's transport names no peer).
    private let coordinator: PeerIdentity = []

    init(machine: WorkerMachine, links: ClientLinks, stop: StopRequest, parentProcess: pid_t?,
         clock: @escaping () -> Double = monotonicSeconds, log: @escaping (String) -> Void) {
        self.machine = machine
        self.links = links
        self.stop = stop
        self.parentProcess = parentProcess
        self.clock = clock
        self.log = log
        heartbeats = HeartbeatSchedule(timeout: machine.setup.options.heartbeatTimeout)
    }

    /// Until the role finishes (returns) or fails (throws its error).
    func run() throws {
        let start = clock()
        while true {
            if try deliverSignals() { return }
            if try perform(.tick) { return }
            try sendHeartbeatIfDue()
            if let limit = machine.silenceLimit {
                let seconds = liveness.silence(of: coordinator, now: clock(), since: start)
                if seconds > limit, try perform(.coordinatorSilent(seconds: seconds)) { return }
            }
            guard let (sender, message) = try links.receive(timeout: 0.2) else { continue }
            if sender == .coordinator { liveness.heard(coordinator, at: clock()) }
            if try perform(.received(from: sender, message)) { return }
        }
    }

    /// A stop request (once) and a parent that is gone; true when the role finished.
    private func deliverSignals() throws -> Bool {
        if !stopDelivered, let stopped = stop.pending {
            stopDelivered = true
            if try perform(.stopRequested(stopped)) { return true }
        }
        return try parentGone()
    }

    /// A local worker whose coordinator process ended (it was re-parented) stops now.
    private func parentGone() throws -> Bool {
        guard let parent = parentProcess, getppid() != parent else { return false }
        return try perform(.parentGone(pid: Int(parent)))
    }

    /// Feeds `event` to the role and carries out its actions; true when the role finished.
    private func perform(_ event: ClientEvent) throws -> Bool {
        for action in machine.handle(event, now: clock()) {
            if try carryOut(action) { return true }
        }
        return false
    }

    private func carryOut(_ action: ClientAction) throws -> Bool {
        switch action {
        case .send(let message, let required):
            do {
                try links.coordinator.send(message)
            } catch where !required {}
        case .sendToShard(let k, let message):
            try links.messenger(.shard(k)).send(message)
        case .linkShards(let endpoints, let limits):
            try links.link(shards: endpoints, limits: limits)
        case .closeShardLinks:
            links.closeShards()
        case .pushToCoordinator(let push):
            try links.coordinator.send { push.encode(into: &$0) }
        case .pushToShard(let k, let push):
            try links.messenger(.shard(k)).send { push.encode(into: &$0) }
        case .startCompute(let job):
            return try compute(job)
        case .limit(let limits):
            links.coordinator.limits = limits
        case .abandonCoordinator:
            links.coordinator.transport.discard()
        case .log(let line):
            log(line)
        case .finish:
            return true
        case .fail(let error):
            throw error
        }
        return false
    }

    /// The step's forward and backward on the compute thread, then its pushes; true when the
    /// role finished.
    private func compute(_ job: ComputeJob) throws -> Bool {
        let startedAt = clock()
        var finished = false
        try runCompute(job, interval: min(0.2, machine.setup.options.heartbeatInterval), service: {
            finished = try parentGone() || finished
            try sendHeartbeatIfDue()
        }, early: { slices in
            finished = try perform(.earlyPartReady(slices: slices)) || finished
        })
        if try finished || perform(.computeFinished(startedAt: startedAt)) || perform(.gradientSent) { return true }
        liveness.heard(coordinator, at: clock())
        return false
    }

    /// A send that fails (the coordinator not reading for the send timeout) ends the worker.
    private func sendHeartbeatIfDue() throws {
        guard let beat = machine.heartbeat, heartbeats.isDue(now: clock()) else { return }
        try links.coordinator.send(.heartbeat(beat))
    }
}

extension CoordinatorPush {
    func encode(into buffer: inout MessageBuffer) {
        WireCodec.encodeGradientPush(step: step, tokenCount: tokenCount, lossSum: lossSum, computeSeconds: times.compute,
                                     communicateSeconds: times.communicate, waitSeconds: times.wait, slices: slices,
                                     part: part, parts: parts, chunks: chunks, gradient: gradient, layout: layout,
                                     state: state, into: &buffer)
    }
}

extension SlabPush {
    func encode(into buffer: inout MessageBuffer) {
        WireCodec.encodeSlabGradientPush(step: step, tokenCount: 0, chunks: chunks, offset: offset, values: values,
                                         part: part, parts: parts, into: &buffer)
    }
}
