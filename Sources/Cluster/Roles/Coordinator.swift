import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur serve` that do not change the numbers of the run.
public struct CoordinatorOptions: Sendable {
    /// ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5555 or tcp://127.0.0.1:* (any port).
    public var bind: String
    public var workers: Int
    /// A worker silent for this long is declared dead.
    public var heartbeatTimeout: Double = 30
    /// How long to wait for all workers to say hello.
    public var joinTimeout: Double = 300
    /// CurveZMQ: the coordinator's secret key and the workers' allowed public keys.
    public var curve: CurveServerSettings?

    public init(bind: String, workers: Int) {
        self.bind = bind
        self.workers = workers
    }

    var heartbeatInterval: Double { min(1, heartbeatTimeout / 5) }
}

public struct CurveServerSettings: Sendable {
    public var secretKey: String
    public var allowedPublicKeys: [String]
    public init(secretKey: String, allowedPublicKeys: [String]) {
        self.secretKey = secretKey
        self.allowedPublicKeys = allowedPublicKeys
    }
}

/// The parameter server. Owns the weights and optimizer (a `TrainingSession`), waits for W
/// workers, assigns each a block of whole gradient chunks, and runs the synchronous step:
/// broadcast weights for step s → gather one gradient push per worker → sum them through the
/// fixed `ReductionTree` → divide by tokens, clip, optimizer step (`TrainingSession.apply`).
///
/// Every message from the network is validated; a bad one is logged and dropped and the
/// coordinator keeps running. A worker that disconnects or stays silent longer than the
/// heartbeat timeout ends the run: the coordinator names it, writes a checkpoint of the
/// last completed step, tells the others to stop, and throws.
public final class Coordinator {
    public let session: TrainingSession
    public let options: CoordinatorOptions
    public let stop = StopRequest()
    private let report: (TrainingEvent) -> Void
    private let log: (String) -> Void

    private let context: ZMQContext
    private let socket: ZMQSocket
    private var authenticator: ZAPAuthenticator?
    public private(set) var endpoint = ""
    private let limits: DecodeLimits
    private var frames: [ZMQMessage] = []
    private var outgoing = MessageBuffer()
    /// The weights message, sent to every worker without a copy per worker.
    private var broadcast = ZMQSharedBuffer(count: 0)
    private var lastHeartbeatSent = 0.0

    private var workers: [Peer] = []
    private var tree: ReductionTree!
    /// Carried state of all N streams after the last completed step (L, N, H), and the
    /// state arriving during the current step (committed when the step completes).
    private let state: RecurrentState<Float>
    private let pendingState: RecurrentState<Float>

    final class Peer {
        let identity: [UInt8]
        let rank: Int
        let host: String
        let pid: Int
        let threads: Int
        var streams: Range<Int> = 0..<0
        var chunks: Range<Int> = 0..<0
        var lastSeen: Double
        let gradient: UnsafeMutablePointer<Float>
        var pushed = false
        /// Parts of this step's push received so far, and which table slices they covered.
        var partsReceived: Set<UInt32> = []
        var expectedParts: UInt32?
        var slicesReceived: [Bool] = []
        var lossSum = 0.0
        var computeSeconds = 0.0
        var communicateSeconds = 0.0
        var waitSeconds = 0.0
        var arrival = 0.0

        init(identity: [UInt8], rank: Int, hello: Hello, parameterCount: Int) {
            self.identity = identity
            self.rank = rank
            host = hello.host
            pid = Int(hello.pid)
            threads = Int(hello.threads)
            lastSeen = now()
            gradient = .allocate(capacity: parameterCount)
            gradient.initialize(repeating: 0, count: parameterCount)
        }

        deinit { gradient.deallocate() }

        var name: String { "worker \(rank) (host \(host), pid \(pid))" }
    }

    public init(session: TrainingSession, options: CoordinatorOptions,
                report: @escaping (TrainingEvent) -> Void, log: @escaping (String) -> Void) throws {
        let chunkCount = session.config.streams / session.config.chunkStreams
        guard options.workers >= 1, options.workers <= chunkCount else {
            throw ClusterError.invalidOptions("--workers \(options.workers) needs at least as many gradient chunks, and --batch \(session.config.streams) / --chunk \(session.config.chunkStreams) gives \(chunkCount); lower --chunk")
        }
        self.session = session
        self.options = options
        self.report = report
        self.log = log
        limits = DecodeLimits(layout: session.layout,
                              extraValues: 2 * session.model.layerCount * session.config.streams * session.model.hiddenSize)
        state = RecurrentState(config: session.model, streams: session.config.streams)
        pendingState = RecurrentState(config: session.model, streams: session.config.streams)
        if let restored = session.restoredState {
            state.h.update(from: restored.h, count: state.count)
            if let c = state.c { c.update(from: restored.c, count: state.count) }
        }
        // One libzmq I/O thread moves about 1 GB/s; weights go out to W workers and
        // gradients come back from W every step.
        context = try ZMQContext(ioThreads: max(1, min(options.workers, 4)))
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setRouterHandover(false)
        try socket.setLinger(.seconds(2))   // the final Shutdown must leave before close
        try socket.setMaximumMessageSize(Int64(limits.maxMessageBytes))
        socket.sendTimeout = .seconds(options.heartbeatTimeout)
        if let curve = options.curve {
            let rejections = log
            authenticator = try ZAPAuthenticator(context: context, allowedPublicKeys: curve.allowedPublicKeys) { rejection in
                rejections("rejected connection: \(rejection)")
            }
            try socket.setZAPDomain("recur")
            try socket.setCurveServer(secretKey: curve.secretKey)
        }
        endpoint = try socket.bind(options.bind)
    }

    deinit { close() }

    /// Closes the socket (lingering so the last Shutdown leaves) and the authenticator.
    /// `run` does it when it ends.
    public func close() {
        authenticator?.stop()
        authenticator = nil
        socket.close()
    }

    // MARK: Run

    /// Joins the workers, trains to `config.steps`, evaluates, checkpoints and shuts the
    /// workers down. Throws (after a checkpoint) when a worker fails or a stop is requested.
    @discardableResult
    public func run() throws -> Summary {
        defer { close() }
        let start = now()
        do {
            try join()
        } catch {
            shutdownWorkers(reason: "\(error)")   // those that joined must not wait for a heartbeat timeout
            throw error
        }
        report(.started(session.startInfo(mode: "coordinator \(endpoint), \(workers.count) worker(s)")))
        var losses: [Double] = [], rates: [Double] = []
        do {
            while !session.isFinished {
                try stop.check()
                let record = try step()
                losses.append(record.loss)
                rates.append(record.tokensPerSecond)
                report(.step(record))
                if session.wantsEvaluation, let result = try evaluateServicing() {
                    report(.evaluation(step: session.step, result: result))
                }
                if session.wantsCheckpoint, !session.isFinished { try checkpoint() }
            }
        } catch {
            // A failed or stopped run keeps what it completed: checkpoint the last full step.
            if let path = try? checkpoint() { log("wrote checkpoint \(path) at step \(session.step)") }
            shutdownWorkers(reason: "\(error)")
            throw error
        }
        let validation = session.options.evaluateAtEnd ? try evaluateServicing() : nil
        if let validation { report(.evaluation(step: session.step, result: validation)) }
        let path = try checkpoint()
        shutdownWorkers(reason: "training finished at step \(session.step)")
        let summary = Summary(steps: session.step, finalTrainLoss: losses.suffix(20).mean,
                              validation: validation, tokensPerSecond: rates.median ?? 0,
                              wallSeconds: now() - start, checkpoint: path)
        report(.finished(summary))
        return summary
    }

    /// The hello every worker must match (model config compared only when a worker states one).
    private var expectedHello: Hello {
        Fingerprint.hello(corpus: session.corpus, modelConfig: session.config.canonicalJSON(), threads: 0)
    }

    private func join() throws {
        let expected = expectedHello
        let deadline = now() + options.joinTimeout
        log("waiting for \(options.workers) worker(s) on \(endpoint)")
        while workers.count < options.workers {
            try stop.check()
            guard now() < deadline else {
                throw ClusterError.joinTimeout(joined: workers.count, expected: options.workers, seconds: options.joinTimeout)
            }
            try sendHeartbeatsIfDue()
            guard let (identity, message) = try receive(timeout: 0.2) else { continue }
            if let peer = peer(identity) {
                peer.lastSeen = now()
                if case .heartbeat = message { continue }
                reject(from: peer.name, "unexpected \(message.kind.rawValue) while waiting for workers")
                continue
            }
            guard case .hello(let hello) = message else {
                reject(from: describe(identity), "\(message.kind.rawValue) before hello")
                continue
            }
            var compared = expected
            if hello.modelConfig.isEmpty { compared.modelConfig = "" }
            if let mismatch = hello.fingerprintMismatch(expected: compared) {
                log("refused worker on \(hello.host) (pid \(hello.pid)): \(mismatch)")
                try? send(.error(WireErrorMessage(message: "\(mismatch)")), to: identity)
                continue
            }
            let peer = Peer(identity: identity, rank: workers.count, hello: hello, parameterCount: session.layout.count)
            workers.append(peer)
            log("\(peer.name) joined with \(peer.threads) thread(s) (\(workers.count)/\(options.workers))")
        }
        // Whole chunks per worker, contiguous, in rank order.
        let chunkCount = session.config.streams / session.config.chunkStreams
        let blocks = StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: workers.count)
        for (peer, block) in zip(workers, blocks) {
            peer.chunks = block
            peer.streams = (block.lowerBound * session.config.chunkStreams)..<(block.upperBound * session.config.chunkStreams)
        }
        tree = ReductionTree(leaves: blocks, over: 0..<chunkCount)
        if !tree.isAligned {
            log("note: \(workers.count) workers do not split the \(chunkCount) chunks along the reduction tree; results stay deterministic but differ in the last bits from other worker counts")
        }
        for peer in workers {
            let welcome = Welcome(rank: UInt32(peer.rank), workerCount: UInt32(workers.count),
                                  runConfig: session.config.canonicalJSON(),
                                  streamBegin: UInt32(peer.streams.lowerBound), streamEnd: UInt32(peer.streams.upperBound),
                                  step: UInt64(session.step),
                                  state: session.restoredState == nil ? [] : stateTensors(of: peer.streams, from: state))
            try send(.welcome(welcome), to: peer)
        }
    }

    /// One synchronous step; returns its record (the session has advanced).
    private func step() throws -> StepRecord {
        let s = session.step
        let (epoch, stepInEpoch) = session.position
        let t0 = now()
        WireCodec.encodeWeights(step: UInt64(s), resetState: stepInEpoch == 0, wantState: true,
                                parameters: UnsafeBufferPointer(session.update.parameters),
                                layout: session.layout, into: &outgoing)
        try prepareBroadcast()
        for peer in workers {
            peer.pushed = false
            peer.partsReceived = []
            peer.expectedParts = nil
            peer.slicesReceived = Array(repeating: false, count: session.layout.slices.count)
            try sendBroadcast(to: peer)
        }
        var pending = workers.count
        while pending > 0 {
            try stop.check()
            try checkHeartbeats(step: s)
            guard let (identity, message) = try receive(timeout: 0.2) else { continue }
            guard let peer = peer(identity) else {
                reject(from: describe(identity), "\(message.kind.rawValue) from a process that is not a worker of this job")
                if case .hello = message {
                    try? send(.error(WireErrorMessage(message: "this job already has its \(workers.count) workers")), to: identity)
                }
                continue
            }
            peer.lastSeen = now()
            switch message {
            case .heartbeat:
                continue
            case .gradientPush(let push):
                if let problem = accept(push, from: peer, step: s) {
                    reject(from: peer.name, problem)
                    continue
                }
                if peer.pushed {
                    peer.arrival = now()
                    pending -= 1
                }
            case .error(let error):
                throw ClusterError.workerFailed("\(peer.name) failed at step \(s + 1): \(error.message)")
            default:
                reject(from: peer.name, "unexpected \(message.kind.rawValue) during step \(s + 1)")
            }
        }
        let t2 = now()
        // Sum the worker blocks through the tree (leaf order = rank order = chunk order).
        tree.sum(workers.map(\.gradient), count: session.layout.count, threads: 1)
        let lossSum = tree.sum(workers.map(\.lossSum))
        let tokens = session.tokensPerStep
        let update = try session.apply(gradientSum: workers[0].gradient, lossSum: lossSum, tokenCount: tokens)
        commitState()
        let t3 = now()

        // The step as the coordinator sees it, split so the parts add up:
        //   wait        = last push arrival − first (the slowest worker's lag),
        //   compute     = the fastest worker's compute + this process's sum and update,
        //   communicate = the rest: encode, send, transfer both ways, decode on both sides.
        // Per worker: its compute, its decode/encode/send (previous step), and its idle
        // time waiting for these weights.
        let arrivals = workers.map(\.arrival)
        let wait = (arrivals.max() ?? t2) - (arrivals.min() ?? t2)
        let compute = (workers.map(\.computeSeconds).min() ?? 0) + (t3 - t2)
        let timings = workers.map {
            WorkerTiming(rank: $0.rank, computeSeconds: $0.computeSeconds, communicateSeconds: $0.communicateSeconds,
                         waitSeconds: $0.waitSeconds)
        }
        return StepRecord(step: session.step, epoch: epoch, loss: lossSum / Double(tokens),
                          gradientNorm: update.gradientNorm, learningRate: update.learningRate, tokens: tokens,
                          stepSeconds: t3 - t0, computeSeconds: compute,
                          communicateSeconds: max(0, (t3 - t0) - compute - wait),
                          waitSeconds: wait, workers: timings)
    }

    /// Validates a push (or one part of it) for step `s` and copies it in; returns why it
    /// was rejected. `peer.pushed` turns true when every part has arrived and the parts
    /// covered the whole parameter table exactly once. Scalars and state come with the last
    /// part.
    private func accept(_ push: DecodedGradientPush, from peer: Peer, step s: Int) -> String? {
        guard push.step == UInt64(s) else {
            return push.step < UInt64(s) ? "stale gradient for step \(push.step + 1), expected step \(s + 1)"
                                         : "gradient for future step \(push.step + 1), expected step \(s + 1)"
        }
        guard !peer.pushed else { return "duplicate gradient for step \(s + 1)" }
        let table = session.layout.slices
        guard push.parts >= 1, push.parts <= UInt32(table.count), push.part < push.parts else {
            return "gradient part \(push.part) of \(push.parts) for a table of \(table.count) tensors"
        }
        if let expected = peer.expectedParts, expected != push.parts {
            return "gradient in \(push.parts) parts after a part of \(expected)"
        }
        guard !peer.partsReceived.contains(push.part) else {
            return "duplicate gradient part \(push.part + 1) of \(push.parts) for step \(s + 1)"
        }
        // A whole push must be the whole table; a part's run starts at its first tensor.
        let run: Range<Int>
        if push.parts == 1 {
            run = table.indices
        } else {
            guard let first = push.tensors.names.first, let start = table.firstIndex(where: { $0.name == first }) else {
                return "gradient part without tensors of this model"
            }
            run = start..<min(table.count, start + push.tensors.count)
        }
        guard !run.contains(where: { peer.slicesReceived[$0] }) else {
            return "gradient part repeats tensors already received for step \(s + 1)"
        }
        let last = push.part == push.parts - 1
        if last {
            let expectedTokens = peer.streams.count * session.config.window
            guard push.tokenCount == UInt64(expectedTokens) else {
                return "gradient over \(push.tokenCount) tokens, expected \(expectedTokens)"
            }
            if let problem = checkState(push.state, streams: peer.streams) { return problem }
        }
        do {
            try push.copyTensors(into: UnsafeMutableBufferPointer(start: peer.gradient, count: session.layout.count),
                                 layout: session.layout, slices: run)
        } catch {
            return "\(error)"
        }
        peer.expectedParts = push.parts
        peer.partsReceived.insert(push.part)
        for i in run { peer.slicesReceived[i] = true }
        if last {
            copyState(push.state, streams: peer.streams, into: pendingState)
            peer.lossSum = push.lossSum
            peer.computeSeconds = push.computeSeconds
            peer.communicateSeconds = push.communicateSeconds
            peer.waitSeconds = push.waitSeconds
        }
        if peer.partsReceived.count == Int(push.parts) {
            guard peer.slicesReceived.allSatisfy({ $0 }) else {
                peer.partsReceived = []
                peer.expectedParts = nil
                peer.slicesReceived = Array(repeating: false, count: table.count)
                return "gradient parts for step \(s + 1) do not cover the whole table; dropped them"
            }
            peer.pushed = true
        }
        return nil
    }

    // MARK: State (L, N, H) ↔ per-worker tensors (L, n, H)

    private var stateNames: [String] { session.model.cell.hasCellState ? ["h", "c"] : ["h"] }

    private func checkState(_ tensors: [WireTensor], streams: Range<Int>) -> String? {
        let shape = [session.model.layerCount, streams.count, session.model.hiddenSize]
        guard tensors.map(\.name) == stateNames else {
            return "state tensors \(tensors.map(\.name)), expected \(stateNames)"
        }
        for t in tensors where t.shape != shape {
            return "state tensor \(t.name): shape \(t.shape), expected \(shape)"
        }
        return nil
    }

    private func copyState(_ tensors: [WireTensor], streams: Range<Int>, into target: RecurrentState<Float>) {
        let H = session.model.hiddenSize, N = session.config.streams, n = streams.count
        for t in tensors {
            let base = t.name == "h" ? target.h : target.c!
            t.values.withUnsafeBufferPointer { v in
                for l in 0..<session.model.layerCount {
                    (base + (l * N + streams.lowerBound) * H).update(from: v.baseAddress! + l * n * H, count: n * H)
                }
            }
        }
    }

    private func stateTensors(of streams: Range<Int>, from source: RecurrentState<Float>) -> [WireTensor] {
        let H = session.model.hiddenSize, N = session.config.streams, n = streams.count, L = session.model.layerCount
        return stateNames.map { name in
            let base = name == "h" ? source.h : source.c!
            var values: [Float] = []
            values.reserveCapacity(L * n * H)
            for l in 0..<L {
                values += UnsafeBufferPointer(start: base + (l * N + streams.lowerBound) * H, count: n * H)
            }
            return WireTensor(name: name, shape: [L, n, H], values: values)
        }
    }

    private func commitState() {
        state.h.update(from: pendingState.h, count: state.count)
        if let c = state.c, let pc = pendingState.c { c.update(from: pc, count: state.count) }
    }

    // MARK: Evaluation and checkpoints (heartbeats keep flowing meanwhile)

    private func evaluateServicing() throws -> Evaluator.Result? {
        let session = self.session
        return try runServicing(interval: options.heartbeatInterval, { session.evaluate() }, service: serviceIdle)
    }

    @discardableResult
    private func checkpoint() throws -> String? {
        let h = Array(UnsafeBufferPointer(start: state.h, count: state.count))
        let c = state.c.map { Array(UnsafeBufferPointer(start: $0, count: state.count)) } ?? []
        let session = self.session
        let path = try runServicing(interval: options.heartbeatInterval, {
            try session.writeCheckpoint(hiddenH: h, hiddenC: c)
        }, service: serviceIdle)
        if let path { report(.checkpoint(step: session.step, path: path)) }
        return path
    }

    /// Between steps: answer the socket, send heartbeats, notice dead workers.
    private func serviceIdle() throws {
        try sendHeartbeatsIfDue()
        while let (identity, message) = try receive(timeout: 0) {
            if let peer = peer(identity) {
                peer.lastSeen = now()
                if case .heartbeat = message { continue }
                if case .error(let e) = message { throw ClusterError.workerFailed("\(peer.name) failed: \(e.message)") }
                reject(from: peer.name, "unexpected \(message.kind.rawValue) between steps")
            } else {
                reject(from: describe(identity), "\(message.kind.rawValue) from a process that is not a worker of this job")
            }
        }
    }

    private func sendHeartbeatsIfDue() throws {
        guard now() - lastHeartbeatSent >= options.heartbeatInterval else { return }
        lastHeartbeatSent = now()
        for peer in workers { try send(.heartbeat(Heartbeat(rank: UInt32(peer.rank), step: UInt64(session.step))), to: peer) }
    }

    /// Throws when a worker that has not pushed yet has been silent too long.
    private func checkHeartbeats(step s: Int) throws {
        let t = now()
        for peer in workers where !peer.pushed && t - peer.lastSeen > options.heartbeatTimeout {
            throw ClusterError.workerFailed("\(peer.name) stopped answering at step \(s + 1) (no message for \(ClusterError.format(options.heartbeatTimeout)) s)")
        }
    }

    private func shutdownWorkers(reason: String) {
        for peer in workers { try? send(.shutdown(Shutdown(reason: reason)), to: peer) }
    }

    // MARK: Socket

    /// Next message as (identity, decoded) or nil on timeout. Malformed messages are
    /// logged and dropped here, so callers only see valid ones.
    private func receive(timeout: Double) throws -> ([UInt8], DecodedMessage)? {
        while true {
            do {
                try socket.receive(into: &frames, timeout: .milliseconds(Int(timeout * 1000)))
            } catch ZMQError.timeout {
                return nil
            } catch ZMQError.tooManyFrames(let count, _) {
                log("rejected message: \(count) frames")
                continue
            }
            guard frames.count == 2 else {
                reject(from: frames.first.map { describe($0.array) } ?? "?", "\(frames.count - 1) body frames, expected 1")
                if timeout == 0 { return nil }
                continue
            }
            let identity = frames[0].array
            do {
                let message = try WireCodec.decode(frames[1].bytes, limits: limits)
                return (identity, message)
            } catch {
                let who = peer(identity)?.name ?? describe(identity)
                reject(from: who, "\(error)")
                if case WireError.versionMismatch = error {
                    try? send(.error(WireErrorMessage(message: "\(error)")), to: identity)
                }
                peer(identity)?.lastSeen = now()
                if timeout == 0 { return nil }
            }
        }
    }

    private func peer(_ identity: [UInt8]) -> Peer? { workers.first { $0.identity == identity } }

    private func describe(_ identity: [UInt8]) -> String {
        "peer \(identity.map { String(format: "%02x", $0) }.joined())"
    }

    private func reject(from who: String, _ reason: String) {
        log("rejected message from \(who): \(reason)")
    }

    private func send(_ message: Message, to peer: Peer) throws {
        do {
            try send(message, to: peer.identity)
        } catch ZMQError.hostUnreachable {
            throw ClusterError.workerFailed("\(peer.name) is gone (connection closed) at step \(session.step + 1)")
        }
    }

    private func send(_ message: Message, to identity: [UInt8]) throws {
        var buffer = MessageBuffer()
        WireCodec.encode(message, into: &buffer)
        try buffer.withUnsafeBytes { try socket.send(to: identity, body: $0) }
    }

    /// Copies the encoded weights into the shared buffer once the last broadcast is out.
    private func prepareBroadcast() throws {
        guard broadcast.waitUntilReleased(timeout: .seconds(options.heartbeatTimeout)) else {
            throw ClusterError.workerFailed("the last weights broadcast is still queued after \(ClusterError.format(options.heartbeatTimeout)) s: a worker stopped reading")
        }
        if broadcast.count != outgoing.count { broadcast = ZMQSharedBuffer(count: outgoing.count) }
        outgoing.withUnsafeBytes { broadcast.mutableBytes.copyMemory(from: $0) }
    }

    private func sendBroadcast(to peer: Peer) throws {
        do {
            try socket.send(to: peer.identity, message: try ZMQMessage(sharing: broadcast))
        } catch ZMQError.hostUnreachable {
            throw ClusterError.workerFailed("\(peer.name) is gone (connection closed) at step \(session.step + 1)")
        } catch ZMQError.timeout {
            throw ClusterError.workerFailed("\(peer.name) does not take messages (send timed out) at step \(session.step + 1)")
        }
    }
}
