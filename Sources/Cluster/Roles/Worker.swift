import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur work`.
public struct WorkerOptions: Sendable {
    public var connect: String
    public var threads: Int
    /// The coordinator silent for this long ends the worker.
    public var heartbeatTimeout: Double = 30
    /// CurveZMQ: this worker's key pair and the coordinator's public key.
    public var curve: CurveClientSettings?

    public init(connect: String, threads: Int) {
        self.connect = connect
        self.threads = threads
    }

    var heartbeatInterval: Double { min(1, heartbeatTimeout / 5) }
}

public struct CurveClientSettings: Sendable {
    public var serverPublicKey: String
    public var publicKey: String
    public var secretKey: String
    public init(serverPublicKey: String, publicKey: String, secretKey: String) {
        self.serverPublicKey = serverPublicKey
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// A worker process: says hello with its corpus fingerprint, receives its config, stream
/// block and starting state, then for every step decodes the weights, computes the
/// gradient of its streams with a `GradientEngine` (K threads) and pushes it back.
/// Heartbeats go out while it computes; a coordinator silent for longer than the timeout
/// ends the worker with an error.
public final class Worker {
    public let options: WorkerOptions
    public let corpus: Corpus
    public let stop = StopRequest()
    private let log: (String) -> Void
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var frames: [ZMQMessage] = []
    private var outgoing = MessageBuffer()
    public private(set) var rank = -1

    public init(corpus: Corpus, options: WorkerOptions, log: @escaping (String) -> Void) throws {
        self.corpus = corpus
        self.options = options
        self.log = log
        context = try ZMQContext()
        socket = try ZMQSocket(context: context, kind: .dealer)
        try socket.setIdentity("\(ProcessInfo.processInfo.hostName):\(getpid()):\(UInt32.random(in: 0...UInt32.max))")
        try socket.setLinger(.seconds(2))   // let the last push or error leave before exit
        socket.sendTimeout = .seconds(options.heartbeatTimeout)
        if let curve = options.curve {
            try socket.setCurveClient(serverPublicKey: curve.serverPublicKey, publicKey: curve.publicKey, secretKey: curve.secretKey)
        }
        try socket.connect(options.connect)
    }

    deinit { socket.close() }

    /// Returns normally when the coordinator says the run is over. A stop request (signal)
    /// is reported to the coordinator before the worker exits, so the run ends at once.
    public func run() throws {
        defer { socket.close() }
        do {
            try serve()
        } catch ClusterError.stopped(let reason, let code) {
            try? send(.error(WireErrorMessage(message: "worker \(rank) (pid \(getpid())) stopped: \(reason)")))
            throw ClusterError.stopped(reason, exitCode: code)
        }
    }

    private func serve() throws {
        try send(.hello(Fingerprint.hello(corpus: corpus, modelConfig: "", threads: options.threads)))
        let welcome = try awaitWelcome()
        rank = Int(welcome.rank)
        let config = try TrainingConfig.fromJSON(welcome.runConfig)
        try config.validate()
        let model = config.model(vocabularySize: corpus.vocabulary.count)
        let layout = ParameterLayout(model)
        let (train, _) = corpus.split(validationFraction: config.validationFraction)
        let streamLayout = StreamLayout(trainCount: train.count, streams: config.streams, window: config.window)
        let streams = Int(welcome.streamBegin)..<Int(welcome.streamEnd)
        guard !streams.isEmpty, streams.upperBound <= config.streams,
              streams.lowerBound % config.chunkStreams == 0, streams.count % config.chunkStreams == 0 else {
            throw ClusterError.protocolViolation("welcome assigns streams \(streams), not whole chunks of \(config.chunkStreams) within \(config.streams)")
        }
        let engine = GradientEngine(config: model, train: train, streamLayout: streamLayout, streams: streams,
                                    chunkStreams: config.chunkStreams, threads: options.threads)
        try restoreState(welcome.state, into: engine.state, model: model, streams: streams.count)
        log("worker \(rank) of \(welcome.workerCount): streams \(streams.lowerBound)..<\(streams.upperBound), \(engine.threads) thread(s), from step \(welcome.step + 1)")

        let parameters = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.count)
        parameters.initialize(repeating: 0)
        defer { parameters.deallocate() }
        var expectedStep = welcome.step
        var lastCommunicate = 0.0
        var lastPushSent: Double?
        var lastHeard = now()
        while true {
            try stop.check()
            guard let message = try receive(timeout: 0.2) else {
                if now() - lastHeard > options.heartbeatTimeout {
                    throw ClusterError.coordinatorLost(endpoint: options.connect, seconds: options.heartbeatTimeout)
                }
                continue
            }
            lastHeard = now()
            switch message {
            case .heartbeat:
                continue
            case .shutdown(let shutdown):
                log("worker \(rank): coordinator ended the run: \(shutdown.reason)")
                return
            case .error(let error):
                throw ClusterError.refused(error.message)
            case .weights(let weights):
                let t0 = now()
                let idle = lastPushSent.map { t0 - $0 } ?? 0
                guard weights.step == expectedStep else {
                    log("worker \(rank): rejected weights for step \(weights.step + 1), expected step \(expectedStep + 1)")
                    continue
                }
                do {
                    try weights.copyTensors(into: parameters, layout: layout)
                } catch {
                    throw ClusterError.protocolViolation("weights for step \(weights.step + 1) do not fit this model: \(error)")
                }
                let stepInEpoch = streamLayout.position(globalStep: Int(weights.step)).stepInEpoch
                let reset = weights.resetState
                let t1 = now()
                let base = UnsafePointer(parameters.baseAddress!)
                let gradient = UnsafeBufferPointer(start: engine.gradient, count: layout.count)
                // The top layer's and head's gradient leaves as part 0 of 2 while the lower
                // layers are still in backward; the rest follows as the last part.
                let early = engine.earlySlices
                let parts = early == nil ? 1 : 2
                let lossSum = try computeSendingEarlyPart(engine: engine, parameters: base, stepInEpoch: stepInEpoch,
                                                          reset: reset, step: weights.step) { slices in
                    WireCodec.encodeGradientPush(step: weights.step, tokenCount: 0, lossSum: 0, computeSeconds: 0,
                                                 communicateSeconds: 0, slices: slices, part: 0, parts: 2,
                                                 gradient: gradient, layout: layout, into: &self.outgoing)
                    try self.outgoing.withUnsafeBytes { try self.socket.send($0) }
                }
                let t2 = now()
                let state = weights.wantState ? stateTensors(engine.state, model: model, streams: streams.count) : []
                WireCodec.encodeGradientPush(step: weights.step, tokenCount: UInt64(engine.tokensPerStep), lossSum: lossSum,
                                             computeSeconds: t2 - t1, communicateSeconds: lastCommunicate, waitSeconds: idle,
                                             slices: 0..<(early?.lowerBound ?? layout.slices.count), part: parts - 1, parts: parts,
                                             gradient: gradient, layout: layout, state: state, into: &outgoing)
                try outgoing.withUnsafeBytes { try socket.send($0) }
                lastPushSent = now()
                lastCommunicate = (t1 - t0) + (lastPushSent! - t2)
                expectedStep += 1
                lastHeard = now()
            default:
                log("worker \(rank): ignored unexpected \(message.kind.rawValue)")
            }
        }
    }

    /// Runs `computeGradient` on its own thread; this thread sends heartbeats meanwhile and
    /// sends the early part the moment the engine hands it over. Returns the loss sum.
    private func computeSendingEarlyPart(engine: GradientEngine, parameters: UnsafePointer<Float>, stepInEpoch: Int,
                                         reset: Bool, step: UInt64,
                                         sendEarly: (Range<Int>) throws -> Void) throws -> Double {
        let events = DispatchSemaphore(value: 0)
        let box = ComputeBox()
        nonisolated(unsafe) let weights = parameters   // read-only while the thread runs
        let thread = Thread {
            let result = engine.computeGradient(parameters: weights, stepInEpoch: stepInEpoch, resetState: reset,
                                                early: engine.earlySlices == nil ? nil : { slices in
                                                    box.post(early: slices)
                                                    events.signal()
                                                })
            box.finish(lossSum: result.lossSum)
            events.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        while true {
            if events.wait(timeout: .now() + options.heartbeatInterval) == .timedOut {
                try sendHeartbeat(step: step)
                continue
            }
            if let slices = box.takeEarly() { try sendEarly(slices) }
            if let lossSum = box.lossSum { return lossSum }
        }
    }

    private func awaitWelcome() throws -> Welcome {
        let deadline = now() + max(options.heartbeatTimeout, 1)
        var lastHeard = now()
        var heardAnything = false
        while true {
            try stop.check()
            guard let message = try receive(timeout: 0.2) else {
                if now() - lastHeard > options.heartbeatTimeout, now() > deadline {
                    guard heardAnything else {
                        throw ClusterError.coordinatorUnreachable(endpoint: options.connect, seconds: options.heartbeatTimeout,
                                                                  encrypted: options.curve != nil)
                    }
                    throw ClusterError.coordinatorLost(endpoint: options.connect, seconds: options.heartbeatTimeout,
                                                       encrypted: options.curve != nil)
                }
                continue
            }
            lastHeard = now()
            heardAnything = true
            switch message {
            case .welcome(let welcome): return welcome
            case .error(let error): throw ClusterError.refused(error.message)
            case .heartbeat: continue
            case .shutdown(let s): throw ClusterError.stopped("coordinator ended the run before it started: \(s.reason)")
            default: log("ignored unexpected \(message.kind.rawValue) before welcome")
            }
        }
    }

    private func restoreState(_ tensors: [WireTensor], into state: RecurrentState<Float>, model: ModelConfig, streams n: Int) throws {
        guard !tensors.isEmpty else { return }
        let shape = [model.layerCount, n, model.hiddenSize]
        for t in tensors {
            guard t.shape == shape, t.name == "h" || (t.name == "c" && state.c != nil) else {
                throw ClusterError.protocolViolation("welcome state tensor \(t.name) \(t.shape), expected \(shape)")
            }
            (t.name == "h" ? state.h : state.c!).update(from: t.values, count: state.count)
        }
    }

    private func stateTensors(_ state: RecurrentState<Float>, model: ModelConfig, streams n: Int) -> [WireTensor] {
        let shape = [model.layerCount, n, model.hiddenSize]
        var tensors = [WireTensor(name: "h", shape: shape, values: Array(UnsafeBufferPointer(start: state.h, count: state.count)))]
        if let c = state.c { tensors.append(WireTensor(name: "c", shape: shape, values: Array(UnsafeBufferPointer(start: c, count: state.count)))) }
        return tensors
    }

    private var lastHeartbeat = 0.0
    private func sendHeartbeat(step: UInt64) throws {
        guard now() - lastHeartbeat >= options.heartbeatInterval else { return }
        lastHeartbeat = now()
        try send(.heartbeat(Heartbeat(rank: UInt32(max(rank, 0)), step: step)))
    }

    private func send(_ message: Message) throws {
        var buffer = MessageBuffer()
        WireCodec.encode(message, into: &buffer)
        try buffer.withUnsafeBytes { try socket.send($0) }
    }

    private func receive(timeout: Double) throws -> DecodedMessage? {
        do {
            try socket.receive(into: &frames, timeout: .milliseconds(Int(timeout * 1000)))
        } catch ZMQError.timeout {
            return nil
        }
        guard frames.count == 1 else {
            log("rejected message from the coordinator: \(frames.count) frames")
            return nil
        }
        do {
            return try WireCodec.decode(frames[0].bytes, limits: .standard)
        } catch {
            log("rejected message from the coordinator: \(error)")
            return nil
        }
    }
}

/// Hands results from the compute thread to the worker's socket thread.
private final class ComputeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var early: Range<Int>?
    private var loss: Double?

    func post(early slices: Range<Int>) { lock.lock(); early = slices; lock.unlock() }
    func finish(lossSum: Double) { lock.lock(); loss = lossSum; lock.unlock() }

    func takeEarly() -> Range<Int>? {
        lock.lock()
        defer { lock.unlock() }
        let slices = early
        early = nil
        return slices
    }

    var lossSum: Double? {
        lock.lock()
        defer { lock.unlock() }
        return loss
    }
}
