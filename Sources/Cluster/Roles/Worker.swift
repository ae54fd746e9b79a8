import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur work`.
public struct WorkerOptions: Sendable {
    public var threads: Int
    /// The coordinator silent for this long ends the worker.
    public var heartbeatTimeout: Double = 30
    /// Where the coordinator is, for messages ("no answer from … at ENDPOINT").
    public var endpoint: String
    /// Whether the link is CurveZMQ (messages then hint at keys).
    public var encrypted = false
    /// The job's join token (needed without CurveZMQ).
    public var joinToken = ""
    /// A local worker's coordinator process: when it is gone (the worker is re-parented),
    /// the worker exits at once instead of waiting out the heartbeat timeout.
    public var parentProcess: pid_t?
    /// After losing its coordinator, how long to wait for one at the same address (a
    /// restarted `recur serve --resume`) and join it again; 0: exit at once.
    public var reconnectTimeout: Double = 60
    /// `--emulate-compute`: each step waits this many milliseconds and pushes a pseudo-gradient
    /// (`EmulatedCompute`) instead of computing; nil: real forward and backward.
    public var emulatedComputeMilliseconds: Double?

    public init(endpoint: String, threads: Int) {
        self.endpoint = endpoint
        self.threads = threads
    }

    var heartbeatInterval: Double { HeartbeatSchedule.interval(forTimeout: heartbeatTimeout) }
}

/// A worker process: says hello with its corpus fingerprint, receives the run config, its
/// stream block and starting state, then for every step takes the weights, computes the
/// gradient of its streams with a `GradientEngine` (K threads) and pushes it back with its
/// carried state. Heartbeats go out while it computes; a coordinator silent for longer than
/// the timeout ends the worker with an error.
public final class Worker {
    public let options: WorkerOptions
    public let corpus: Corpus
    public let stop = StopRequest()
    private let log: (String) -> Void
    private let messenger: ClientMessenger
    public private(set) var rank = -1
    private lazy var heartbeats = HeartbeatSchedule(timeout: options.heartbeatTimeout)
    /// How to reach a parameter shard of a sharded run (the Welcome names its endpoint).
    public var connectToShard: ((String) throws -> ClientTransport)?

    public init(corpus: Corpus, options: WorkerOptions, transport: ClientTransport, log: @escaping (String) -> Void) {
        self.corpus = corpus
        self.options = options
        self.log = log
        messenger = ClientMessenger(transport: transport, log: log)
    }

    /// Returns normally when the coordinator says the run is over. A stop request (signal)
    /// is reported to the coordinator before the worker exits, so the run ends at once.
    public func run() throws {
        defer { messenger.transport.close() }
        do {
            try serve()
        } catch let stopped as StopRequest.Stopped {
            try? messenger.send(.error(WireErrorMessage(message: "worker \(rank) (pid \(getpid())) stopped: \(stopped.reason)")))
            throw stopped
        }
    }

    /// Joins, then works on each assignment the coordinator gives (a new Welcome mid-run moves
    /// chunks after a worker was lost). A lost coordinator is waited for up to the reconnect
    /// timeout (a restarted `recur serve --resume` at the same address), then joined again.
    private func serve() throws {
        var welcome = try join(deadline: nil)
        while true {
            do {
                guard let next = try work(welcome) else { return }
                welcome = next
            } catch ClusterError.coordinatorLost(let endpoint, let seconds, let encrypted) where options.reconnectTimeout > 0 {
                log("worker \(rank): coordinator \(endpoint) stopped answering (no message for \(ClusterError.format(seconds)) s); waiting up to \(ClusterError.format(options.reconnectTimeout)) s for one at that address")
                welcome = try join(deadline: monotonicSeconds() + options.reconnectTimeout, lost: (endpoint, encrypted))
                log("worker \(rank): rejoined at step \(oneBased(welcome.step))")
            } catch is AskedForHello {
                // A restarted coordinator (`serve --resume`) heard this worker before its hello.
                log("worker \(rank): the coordinator at \(options.endpoint) asks for a hello (it restarted); joining again")
                welcome = try join(deadline: monotonicSeconds() + max(options.reconnectTimeout, options.heartbeatTimeout),
                                   lost: (options.endpoint, options.encrypted))
                log("worker \(rank): rejoined at step \(oneBased(welcome.step))")
            }
        }
    }

    private func join(deadline: Double?, lost: (endpoint: String, encrypted: Bool)? = nil) throws -> Welcome {
        try sendHello()
        return try awaitWelcome(deadline: deadline, lost: lost)
    }

    private var lastHello = 0.0

    private func sendHello() throws {
        lastHello = monotonicSeconds()
        try messenger.send(.hello(Fingerprint.hello(corpus: corpus, threads: options.threads, joinToken: options.joinToken)))
    }

    /// The coordinator asked for this worker's hello (`WireErrorMessage.helloFirst`).
    private struct AskedForHello: Error {}

    /// Works on one assignment; returns the next one, or nil when the run is over.
    private func work(_ welcome: Welcome) throws -> Welcome? {
        rank = Int(welcome.rank)
        let plan = try RunPlan(config: TrainingConfig.fromJSON(welcome.runConfig), corpus: corpus)
        let config = plan.config
        let streams = Int(welcome.streamBegin)..<Int(welcome.streamEnd)
        guard !streams.isEmpty, streams.upperBound <= config.streams,
              streams.lowerBound % config.chunkStreams == 0, streams.count % config.chunkStreams == 0 else {
            throw ClusterError.protocolViolation("welcome assigns streams \(streams), not whole chunks of \(config.chunkStreams) within \(config.streams)")
        }
        guard welcome.step <= UInt64(config.steps) else {
            throw ClusterError.protocolViolation("welcome starts at step \(oneBased(welcome.step)) of a run of \(config.steps) steps")
        }
        messenger.limits = DecodeLimits(plan: plan)   // a later Welcome carries state too
        let engine: any GradientComputing = options.emulatedComputeMilliseconds.map {
            EmulatedCompute(milliseconds: $0, plan: plan, streams: streams)
        } ?? plan.engine(block: streams, threads: options.threads)
        let state = CarriedState(model: plan.model, streams: streams.count)
        let own = 0..<streams.count
        if !welcome.state.isEmpty {
            if let problem = state.problem(with: welcome.state, streams: own) {
                throw ClusterError.protocolViolation("welcome state: \(problem)")
            }
            state.set(welcome.state, streams: own)
        }
        log("worker \(rank) of \(welcome.workerCount): streams \(streams.lowerBound)..<\(streams.upperBound), \(engine.threads) thread(s), from step \(welcome.step + 1), kernels \(KernelLevel.current)")

        let layout = plan.layout
        let parameters = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.count)
        parameters.initialize(repeating: 0)
        defer { parameters.deallocate() }
        var shards: WorkerShards?
        if !welcome.shardEndpoints.isEmpty {
            guard let connectToShard else { throw ClusterError.protocolViolation("welcome names parameter shards; this worker cannot reach shards") }
            shards = try WorkerShards(welcome: welcome, layout: layout,
                                      hello: Fingerprint.hello(corpus: corpus, threads: options.threads, joinToken: options.joinToken),
                                      connect: connectToShard, log: log)
            log("worker \(rank): \(shards!.messengers.count) parameter shards")
        }
        var expectedStep = welcome.step
        var lastCommunicate = 0.0
        var lastPushSent: Double?
        var lastHeard = monotonicSeconds()
        while true {
            try stop.check()
            try checkParent()
            try sendHeartbeat(step: expectedStep)   // also while idle: the coordinator may be checkpointing
            let incoming: (shard: Int?, DecodedMessage)?
            if let shards {
                incoming = try shards.receive(timeout: 0.2, control: messenger)
            } else {
                incoming = try messenger.receive(timeout: 0.2).map { (nil, $0) }
            }
            guard let (shard, message) = incoming else {
                if monotonicSeconds() - lastHeard > options.heartbeatTimeout {
                    throw ClusterError.coordinatorLost(endpoint: options.endpoint, seconds: options.heartbeatTimeout,
                                                       encrypted: options.encrypted)
                }
                continue
            }
            if shard == nil { lastHeard = monotonicSeconds() }
            switch message {
            case .heartbeat:
                continue
            case .shutdown(let shutdown):
                log("worker \(rank): coordinator ended the run: \(shutdown.reason)")
                return nil
            case .welcome(let next):
                log("worker \(rank): new assignment from step \(oneBased(next.step)): streams \(next.streamBegin)..<\(next.streamEnd)")
                return next
            case .error(let error) where error.asksForHello && shard == nil:
                throw AskedForHello()
            case .error(let error):
                throw ClusterError.refused(error.message)
            case .weights(let weights):
                let t0 = monotonicSeconds()
                let idle = lastPushSent.map { t0 - $0 } ?? 0
                guard weights.step == expectedStep else {
                    log("worker \(rank): rejected weights for step \(oneBased(weights.step)), expected step \(oneBased(expectedStep))")
                    continue
                }
                var resetState = weights.resetState
                if let shards {
                    guard let shard else { throw ClusterError.protocolViolation("weights from the coordinator of a sharded run") }
                    let taken = try shards.take(weights, from: shard, into: parameters)
                    guard taken.complete else { continue }
                    resetState = taken.resetState
                } else {
                    do {
                        try weights.copyTensors(into: parameters, layout: layout)
                    } catch {
                        throw ClusterError.protocolViolation("weights for step \(oneBased(weights.step)) do not fit this model: \(error)")
                    }
                }
                // Weights that are not finite (a broken or hostile coordinator) are never computed
                // on: the gradient pushed back would be NaN too.
                guard allFinite(parameters.baseAddress!, count: parameters.count) else {
                    throw ClusterError.protocolViolation("weights for step \(oneBased(weights.step)) hold values that are not finite")
                }
                if resetState { state.reset() }
                let stepInEpoch = plan.position(globalStep: Int(weights.step)).stepInEpoch
                let t1 = monotonicSeconds()
                // One push per reduction-tree node the block covers. The top layer's and head's
                // gradient leaves as part 0 of 2 while the lower layers are still in backward;
                // the rest follows as the last part, with the node's loss, tokens and state.
                // Sharded, the early run goes to its shards instead (the coordinator's push then
                // carries loss, tokens and state only).
                let early = shards == nil ? engine.earlySlices : nil
                let parts = early == nil ? 1 : 2
                let shardEarly = shards == nil ? nil : config.earlyElements(of: layout)   // as the shards derive it
                try computeSendingEarlyPart(engine: engine, parameters: UnsafePointer(parameters.baseAddress!),
                                            stepInEpoch: stepInEpoch, state: state, step: weights.step) { slices in
                    if let shards, shardEarly != nil {
                        try shards.push(step: weights.step, nodes: engine.nodes, earlyFrom: shardEarly, early: true,
                                        gradient: { UnsafePointer(engine.gradient(ofNode: $0)) })
                        return
                    }
                    guard early != nil else { return }
                    for (i, node) in engine.nodes.enumerated() {
                        let gradient = UnsafeBufferPointer(start: engine.gradient(ofNode: i), count: layout.count)
                        try self.messenger.send { buffer in
                            WireCodec.encodeGradientPush(step: weights.step, tokenCount: 0, lossSum: 0, computeSeconds: 0,
                                                         communicateSeconds: 0, slices: slices, part: 0, parts: 2, chunks: node,
                                                         gradient: gradient, layout: layout, into: &buffer)
                        }
                    }
                }
                let t2 = monotonicSeconds()
                try shards?.push(step: weights.step, nodes: engine.nodes, earlyFrom: shardEarly, early: false,
                                 gradient: { UnsafePointer(engine.gradient(ofNode: $0)) })
                for (i, node) in engine.nodes.enumerated() {
                    let gradient = UnsafeBufferPointer(start: engine.gradient(ofNode: i), count: layout.count)
                    let rows = plan.streams(ofChunks: node), local = (rows.lowerBound - streams.lowerBound)..<(rows.upperBound - streams.lowerBound)
                    try messenger.send { buffer in
                        WireCodec.encodeGradientPush(step: weights.step, tokenCount: UInt64(rows.count * config.predictionsPerStream),
                                                     lossSum: engine.nodeLoss[i], computeSeconds: t2 - t1,
                                                     communicateSeconds: lastCommunicate, waitSeconds: idle,
                                                     slices: 0..<(shards != nil ? 0 : early?.lowerBound ?? layout.slices.count), part: parts - 1,
                                                     parts: parts, chunks: node, gradient: gradient, layout: layout,
                                                     state: state.wireTensors(streams: local), into: &buffer)
                    }
                }
                lastPushSent = monotonicSeconds()
                lastCommunicate = (t1 - t0) + (lastPushSent! - t2)
                expectedStep += 1
                lastHeard = monotonicSeconds()
            default:
                log("worker \(rank): ignored unexpected \(message.kind.rawValue)")
            }
        }
    }

    /// Runs `computeGradient` on its own thread; this thread sends heartbeats meanwhile and
    /// sends the early parts the moment the engine hands them over.
    private func computeSendingEarlyPart(engine: any GradientComputing, parameters: UnsafePointer<Float>, stepInEpoch: Int,
                                         state: CarriedState, step: UInt64,
                                         sendEarly: (Range<Int>) throws -> Void) throws {
        let events = DispatchSemaphore(value: 0)
        let box = ComputeBox()
        nonisolated(unsafe) let weights = parameters   // read-only while the thread runs
        nonisolated(unsafe) let carried = state.recurrent   // only the compute thread touches it meanwhile
        let thread = Thread {
            _ = engine.computeGradient(parameters: weights, step: Int(step), stepInEpoch: stepInEpoch, from: carried, into: carried,
                                       early: engine.earlySlices == nil ? nil : { slices in
                                           box.post(early: slices)
                                           events.signal()
                                       })
            box.finish()   // per-node sums and losses are in the engine
            events.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        while true {
            if events.wait(timeout: .now() + min(0.2, options.heartbeatInterval)) == .timedOut {
                try checkParent()
                try sendHeartbeat(step: step)
                continue
            }
            if let slices = box.takeEarly() { try sendEarly(slices) }
            if box.isFinished { return }
        }
    }

    /// Waits for the welcome: until the heartbeat timeout passes without a word, or, when
    /// rejoining, until `deadline`.
    private func awaitWelcome(deadline rejoinDeadline: Double?, lost: (endpoint: String, encrypted: Bool)?) throws -> Welcome {
        let deadline = rejoinDeadline ?? monotonicSeconds() + max(options.heartbeatTimeout, 1)
        var lastHeard = monotonicSeconds()
        var heardAnything = false
        while true {
            try stop.check()
            try checkParent()
            guard let message = try messenger.receive(timeout: 0.2) else {
                if let lost, monotonicSeconds() > deadline {
                    throw ClusterError.coordinatorLost(endpoint: lost.endpoint, seconds: options.heartbeatTimeout + options.reconnectTimeout,
                                                       encrypted: lost.encrypted)
                }
                if lost == nil, monotonicSeconds() - lastHeard > options.heartbeatTimeout, monotonicSeconds() > deadline {
                    guard heardAnything else {
                        throw ClusterError.coordinatorUnreachable(endpoint: options.endpoint, seconds: options.heartbeatTimeout,
                                                                  encrypted: options.encrypted)
                    }
                    throw ClusterError.coordinatorLost(endpoint: options.endpoint, seconds: options.heartbeatTimeout,
                                                       encrypted: options.encrypted)
                }
                continue
            }
            lastHeard = monotonicSeconds()
            heardAnything = true
            switch message {
            case .welcome(let welcome): return welcome
            case .error(let error) where error.asksForHello:
                // The hello is on its way, or was lost: again at most once a second.
                if monotonicSeconds() - lastHello >= 1 { try sendHello() }
            case .error(let error): throw ClusterError.refused(error.message)
            case .heartbeat: continue
            case .shutdown(let s): throw StopRequest.Stopped(reason: "coordinator ended the run before it started: \(s.reason)")
            default: log("ignored unexpected \(message.kind.rawValue) before welcome")
            }
        }
    }

    /// A local worker whose coordinator process ended (it was re-parented) stops now.
    private func checkParent() throws {
        guard let parent = options.parentProcess, getppid() != parent else { return }
        messenger.transport.discard()
        throw ClusterError.coordinatorExited(pid: Int(parent))
    }

    private func sendHeartbeat(step: UInt64) throws {
        guard heartbeats.isDue() else { return }
        try messenger.send(.heartbeat(Heartbeat(rank: UInt32(max(rank, 0)), step: step)))
    }
}

/// Hands results from the compute thread to the worker's socket thread.
private final class ComputeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var early: Range<Int>?
    private var finished = false

    func post(early slices: Range<Int>) { lock.lock(); early = slices; lock.unlock() }
    func finish() { lock.lock(); finished = true; lock.unlock() }

    func takeEarly() -> Range<Int>? {
        lock.lock()
        defer { lock.unlock() }
        let slices = early
        early = nil
        return slices
    }

    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }
}
