import Foundation
import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire
import TestSupport

/// Shared pieces of the distributed tests: a tiny run, an in-process reference, a coordinator
/// and workers on background threads, a scripted fake worker, and bounded waits throughout.
enum ClusterFixtures {
    /// 520 ASCII scalars of a generated play: 7 steps per epoch at N = 8, T = 8, so a 20-step
    /// run crosses two epoch boundaries (state reset) and a 10-step resume lands mid-epoch.
    static let corpus = Corpus(text: String(BuiltinCorpus.text(seed: 7, targetSize: 600).prefix(520)), name: "tiny")

    /// LSTM, 2 layers of 16, N = 8 streams of T = 8, chunks of 2 streams (4 chunks, so W = 1,
    /// 2 and 4 split along the reduction tree).
    static func tinyConfig(steps: Int = 20) -> TrainingConfig {
        var config = TrainingConfig()
        config.cell = .lstm
        config.layers = 2
        config.hidden = 16
        config.streams = 8
        config.window = 8
        config.chunkStreams = 2
        config.steps = steps
        return config
    }

    static func options(checkpoint: URL? = nil, resume: Bool = false, threads: Int = 1) -> RunOptions {
        var options = RunOptions()
        options.threads = threads
        options.checkpointDirectory = checkpoint
        options.resume = resume
        return options
    }

    /// What a finished run leaves: its weights and the carried state in its checkpoint.
    struct Outcome {
        var values: [Float]
        var step: Int
        var hiddenH: [Float]
        var hiddenC: [Float]
        var checkpoint: URL
    }

    static func outcome(of session: TrainingSession, checkpoint: URL) throws -> Outcome {
        let saved = try Checkpoint.read(from: checkpoint)
        let training = try XCTUnwrap(saved.training, "\(checkpoint.path) has no training state")
        XCTAssertEqual(saved.parameters, session.update.values, "checkpoint weights differ from the session's")
        return Outcome(values: session.update.values, step: training.step, hiddenH: training.hiddenH,
                       hiddenC: training.hiddenC, checkpoint: checkpoint)
    }

    /// The in-process trainer (`--workers 1`) on the same config: the reference.
    static func localReference(config: TrainingConfig, threads: Int = 1, directory: URL) throws -> Outcome {
        let session = try TrainingSession(config: config, corpus: corpus,
                                          options: options(checkpoint: directory, threads: threads))
        try TrainingLoop(session: session, source: LocalGradientSource(plan: session.plan, threads: threads), report: { _ in }).run()
        return try outcome(of: session, checkpoint: directory)
    }

    /// Polls `condition` every 10 ms for up to `timeout` seconds.
    static func eventually(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return condition()
    }
}

/// Lines written by a log closure on any thread.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    func append(_ line: String) {
        lock.lock()
        stored.append(line)
        lock.unlock()
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    /// The first line holding every fragment (empty fragments match any line).
    func line(containing fragments: [String]) -> String? {
        lines.first { line in fragments.allSatisfy { $0.isEmpty || line.contains($0) } }
    }

    /// Waits (bounded) for a line holding every fragment.
    @discardableResult
    func waitForLine(containing fragments: [String], timeout: Double = 5) -> String? {
        var found: String?
        _ = ClusterFixtures.eventually(timeout: timeout) {
            found = line(containing: fragments)
            return found != nil
        }
        return found
    }

    var text: String { lines.joined(separator: "\n") }
}

/// Runs `body` on its own thread (8 MiB stack) and hands its result to bounded waits.
final class BackgroundRun<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Result<T, Error>?
    private let done = DispatchSemaphore(value: 0)

    init(name: String, _ body: @escaping () throws -> T) {
        let thread = Thread { [self] in
            let result = Result { try body() }
            lock.lock()
            stored = result
            lock.unlock()
            done.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The result, or nil when `body` is still running after `timeout` seconds.
    func wait(timeout: Double) -> Result<T, Error>? {
        if done.wait(timeout: .now() + timeout) == .success { done.signal() }  // keep it signalled
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    var isFinished: Bool { wait(timeout: 0) != nil }
}

/// A `TrainingLoop` with a `Coordinator` on a ZeroMQ socket, on a background thread, with its
/// log and step events captured.
final class CoordinatorHarness: @unchecked Sendable {
    let coordinator: Coordinator
    let loop: TrainingLoop
    let stopRequest = StopRequest()
    let logs = LogLines()
    /// Completed step numbers, as reported.
    let steps = LogLines()
    private var run: BackgroundRun<Summary>?

    /// `onStep` runs on the coordinator's thread after each step is reported (a test may
    /// block it briefly to hold the run at a known step).
    /// `shardEndpoints`: `recur shard` processes to run with (sharded parameter servers);
    /// `shardLink` wraps the coordinator's connection to each endpoint (a test delays what they say).
    init(session: TrainingSession, workers: Int, heartbeatTimeout: Double = 5, joinTimeout: Double = 30,
         minWorkers: Int? = nil, bind: String = "tcp://127.0.0.1:*", shardEndpoints: [String] = [], balance: Bool = true,
         shardLink: @escaping (String, ClientTransport) -> ClientTransport = { $1 }, onStep: @escaping (Int) -> Void = { _ in }) throws {
        var options = CoordinatorOptions(workers: workers)
        options.balance = balance
        options.heartbeatTimeout = heartbeatTimeout
        options.joinTimeout = joinTimeout
        options.minWorkers = minWorkers
        if !shardEndpoints.isEmpty { options.joinToken = ClusterTestCase.joinToken }
        var settings = ZMQServerSettings(bind: bind, maxMessageBytes: Coordinator.decodeLimits(session.plan).maxMessageBytes)
        settings.sendTimeout = heartbeatTimeout
        let logs = self.logs, steps = self.steps
        let server = try ZMQServerTransport(settings)
        let shards = shardEndpoints.isEmpty ? nil : ShardConnection(endpoints: shardEndpoints, connect: {
            shardLink($0, try ZMQClientTransport(connect: $0, sendTimeout: heartbeatTimeout, curve: nil, context: server.context))
        }, update: session.update)
        coordinator = try Coordinator(plan: session.plan, corpus: session.corpus, options: options,
                                      transport: server, stop: stopRequest, update: session.update, shards: shards, log: logs.append)
        loop = TrainingLoop(session: session, source: coordinator, store: coordinator.store, stop: stopRequest, report: { event in
            switch event {
            case .step(let record):
                steps.append("\(record.step)")
                onStep(record.step)
            case .checkpoint(let step, let path):
                logs.append("event: checkpoint \(path) at step \(step)")
            case .message(let text):
                logs.append(text)
            default:
                break
            }
        })
    }

    var endpoint: String { coordinator.endpoint }
    var session: TrainingSession { loop.session }
    var isFinished: Bool { run?.isFinished ?? false }

    func start() {
        precondition(run == nil, "started twice")
        let loop = self.loop
        run = BackgroundRun(name: "coordinator") { try loop.run() }
    }

    /// The run's result, or nil (after asking it to stop) when it is still running after
    /// `timeout` seconds.
    func wait(timeout: Double, file: StaticString = #filePath, line: UInt = #line) -> Result<Summary, Error>? {
        guard let run else { return nil }
        if let result = run.wait(timeout: timeout) { return result }
        XCTFail("coordinator still running after \(timeout) s; log:\n\(logs.text)", file: file, line: line)
        stop()
        return nil
    }

    /// Asks a running coordinator to stop and waits (bounded) for it.
    func stop() {
        guard let run, !run.isFinished else { return }
        stopRequest.request("test cleanup")
        _ = run.wait(timeout: 10)
    }
}

/// A real `Worker` on a background thread.
final class WorkerHarness: @unchecked Sendable {
    let worker: Worker
    let logs = LogLines()
    private var run: BackgroundRun<Void>?

    /// `shardEndpoint` maps the endpoint a Welcome names to the one this worker dials (a test
    /// makes a shard unreachable).
    /// `chunkDelay`: the wait of `--emulate-chunk-ms` (a slower node).
    init(endpoint: String, threads: Int = 1, corpus: Corpus = ClusterFixtures.corpus, heartbeatTimeout: Double = 5,
         chunkDelay: ChunkDelay? = nil, shardEndpoint: @escaping (String) -> String = { $0 }) throws {
        var options = WorkerOptions(endpoint: endpoint, threads: threads)
        options.chunkDelay = chunkDelay
        options.heartbeatTimeout = heartbeatTimeout
        options.reconnectTimeout = 0   // these tests watch a worker give up on a lost coordinator
        options.joinToken = ClusterTestCase.joinToken
        let client = try ZMQClientTransport(connect: endpoint, sendTimeout: heartbeatTimeout, curve: nil)
        worker = Worker(corpus: corpus, options: options, transport: client, log: logs.append)
        worker.connectToShard = {
            try ZMQClientTransport(connect: shardEndpoint($0), sendTimeout: heartbeatTimeout, curve: nil, context: client.context)
        }
    }

    func start() {
        precondition(run == nil, "started twice")
        let worker = self.worker
        run = BackgroundRun(name: "worker") { try worker.run() }
    }

    func wait(timeout: Double, file: StaticString = #filePath, line: UInt = #line) -> Result<Void, Error>? {
        guard let run else { return nil }
        if let result = run.wait(timeout: timeout) { return result }
        XCTFail("worker still running after \(timeout) s; log:\n\(logs.text)", file: file, line: line)
        stop()
        return nil
    }

    func stop() {
        guard let run, !run.isFinished else { return }
        worker.stop.request("test cleanup")
        _ = run.wait(timeout: 10)
    }
}

/// A worker driven step by step by the test, over a raw DEALER or an in-memory transport: it
/// says hello, computes honest gradients with its own `GradientEngine` (so a run with it still
/// equals the reference), and can send anything else in between.
final class FakeWorker {
    /// The DEALER when it talks ZeroMQ (frame-level tests), else nil.
    let socket: ZMQSocket?
    let transport: ClientTransport?
    let corpus: Corpus
    let identity: String
    private(set) var welcome: Welcome?
    private(set) var config = TrainingConfig()
    private(set) var layout: ParameterLayout!
    private(set) var engine: GradientEngine!
    /// The carried state of its streams (L, n, H).
    private var state: CarriedState!
    private var parameters: [Float] = []

    /// The pid it states in its hello (the coordinator names workers by host and pid).
    let pid: UInt32

    init(endpoint: String, identity: String, pid: UInt32 = 4242, corpus: Corpus = ClusterFixtures.corpus) throws {
        self.corpus = corpus
        self.identity = identity
        self.pid = pid
        let socket = try ZMQSocket(context: try ZMQContext(), kind: .dealer)
        try socket.setIdentity(identity)
        socket.sendTimeout = .seconds(5)
        try socket.connect(endpoint)
        self.socket = socket
        transport = nil
    }

    init(network: InMemoryNetwork, identity: String, pid: UInt32 = 4242, corpus: Corpus = ClusterFixtures.corpus) {
        self.corpus = corpus
        self.identity = identity
        self.pid = pid
        socket = nil
        transport = network.client(identity: Array(identity.utf8))
    }

    deinit {
        socket?.close()
        transport?.close()
    }

    /// The hello a correct worker sends (fields may be changed by the caller).
    func hello() -> Hello {
        Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest,
              host: "fakehost", pid: pid, threads: 1)
    }

    func send(_ message: Message) throws { try send(bytes: WireCodec.encode(message)) }
    func send(bytes: [UInt8]) throws {
        if let socket { try socket.send(frames: [bytes]) } else { try bytes.withUnsafeBytes { try transport!.send($0) } }
    }
    func send(frames: [[UInt8]]) throws { try socket!.send(frames: frames) }

    /// The next message that is not a heartbeat, or nil after `timeout` seconds.
    func next(timeout: Double = 10) throws -> DecodedMessage? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let message: DecodedMessage
            if let socket {
                let frames: [[UInt8]]
                do {
                    frames = try socket.receive(timeout: .milliseconds(100))
                } catch ZMQError.timeout {
                    continue
                }
                XCTAssertEqual(frames.count, 1, "the coordinator sends one frame per message")
                message = try WireCodec.decode(frames[0], limits: .standard)
            } else {
                guard case .message(_, let body)? = try transport!.receive(timeout: 0.1) else { continue }
                message = try WireCodec.decode(body, limits: .standard)
            }
            if case .heartbeat = message { continue }
            return message
        }
        return nil
    }

    /// The name the coordinator gives this worker once it has `rank`.
    func name(rank: Int) -> String { "worker \(rank) (host fakehost, pid \(pid))" }

    func sayHello() throws { try send(.hello(hello())) }

    /// Says hello and waits for the welcome.
    @discardableResult
    func join() throws -> Welcome {
        try sayHello()
        return try awaitWelcome()
    }

    /// Waits for the welcome; sets up the engine for the assigned streams.
    @discardableResult
    func awaitWelcome() throws -> Welcome {
        guard let message = try next() else { throw FakeWorkerError("no welcome within 10 s") }
        guard case .welcome(let welcome) = message else { throw FakeWorkerError("expected welcome, got \(message.kind)") }
        self.welcome = welcome
        let plan = try RunPlan(config: TrainingConfig.fromJSON(welcome.runConfig), corpus: corpus)
        config = plan.config
        layout = plan.layout
        parameters = [Float](repeating: 0, count: layout.count)
        engine = GradientEngine(config: plan.model, data: try XCTUnwrap(plan.languageModel),
                                streams: Int(welcome.streamBegin)..<Int(welcome.streamEnd),
                                chunkStreams: config.chunkStreams, threads: 1)
        state = CarriedState(model: plan.model, streams: engine.streams.count)
        return welcome
    }

    var streamCount: Int { Int(welcome!.streamEnd - welcome!.streamBegin) }

    /// Waits for the weights of the next step.
    /// The next weights; re-issued nodes (`--balance on`) on the way are left undone, as a
    /// worker may (a copy is optional to the coordinator).
    func awaitWeights() throws -> DecodedWeights {
        while true {
            guard let message = try next() else { throw FakeWorkerError("no weights within 10 s") }
            if case .reissue = message { continue }
            guard case .weights(let weights) = message else { throw FakeWorkerError("expected weights, got \(message.kind)") }
            return weights
        }
    }

    /// The honest push for `weights` (advances the engine's carried state).
    func honestPush(for weights: DecodedWeights) throws -> GradientPush {
        try parameters.withUnsafeMutableBufferPointer { try weights.copyTensors(into: $0, layout: layout) }
        let stepInEpoch = engine.streamLayout.position(globalStep: Int(weights.step)).stepInEpoch
        if weights.resetState { state.reset() }
        let (lossSum, gradient) = parameters.withUnsafeBufferPointer {
            engine.computeGradient(parameters: $0.baseAddress!, step: Int(weights.step), stepInEpoch: stepInEpoch,
                                   from: state.recurrent, into: state.recurrent)
        }
        let values = Array(UnsafeBufferPointer(start: gradient, count: layout.count))
        let chunks = engine.nodes[0]   // the fixtures' blocks are tree nodes
        return GradientPush(step: weights.step, tokenCount: UInt64(engine.tokensPerStep), lossSum: lossSum,
                            tensors: tensors(values), state: state.wireTensors(streams: 0..<streamCount),
                            computeSeconds: 0, communicateSeconds: 0,
                            chunkBegin: UInt32(chunks.lowerBound), chunkEnd: UInt32(chunks.upperBound))
    }

    /// `values` (layout order) cut into one tensor per parameter slice.
    func tensors(_ values: [Float]) -> [WireTensor] {
        layout.slices.map { WireTensor(name: $0.name, shape: $0.shape, values: Array(values[$0.range])) }
    }

    /// Waits for the coordinator's shutdown and returns its reason.
    func awaitShutdown(timeout: Double = 10) throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let message = try next(timeout: max(0.1, deadline.timeIntervalSinceNow)) else { return nil }
            if case .shutdown(let shutdown) = message { return shutdown.reason }
        }
        return nil
    }
}

struct FakeWorkerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Tracks what a test started so that tearDown can end it: harness threads and temp
/// directories.
class ClusterTestCase: XCTestCase {
    private var coordinators: [CoordinatorHarness] = []
    private var workers: [WorkerHarness] = []
    private var directories: [URL] = []
    private var processes: [RecurProcess] = []
    private var grandchildren: [pid_t] = []

    /// A process started by one of ours (a `recur work` of `recur train`): killed in
    /// tearDown if it is still alive then.
    func killInTearDown(_ pid: pid_t) { grandchildren.append(pid) }

    /// Starts the built `recur` with `arguments`; fails the test when the binary is missing.
    func launch(_ arguments: [String], environment: [String: String] = [:],
                file: StaticString = #filePath, line: UInt = #line) throws -> RecurProcess {
        guard let executable = RecurProcess.executable else {
            XCTFail("no built recur at .build/<configuration>/recur above \(#filePath): run `swift build` first", file: file, line: line)
            throw FakeWorkerError("recur executable missing")
        }
        let process = try RecurProcess(executable, arguments, environment: environment)
        processes.append(process)
        return process
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("recur-cluster-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        directories.append(url)
        return url
    }

    func startCoordinator(_ session: TrainingSession, workers count: Int, heartbeatTimeout: Double = 5,
                          joinTimeout: Double = 30, minWorkers: Int? = nil, shardEndpoints: [String] = [], balance: Bool = true,
                          shardLink: @escaping (String, ClientTransport) -> ClientTransport = { $1 },
                          onStep: @escaping (Int) -> Void = { _ in }) throws -> CoordinatorHarness {
        let harness = try CoordinatorHarness(session: session, workers: count, heartbeatTimeout: heartbeatTimeout,
                                             joinTimeout: joinTimeout, minWorkers: minWorkers, shardEndpoints: shardEndpoints, balance: balance, shardLink: shardLink,
                                             onStep: onStep)
        coordinators.append(harness)
        harness.start()
        return harness
    }

    func startWorker(_ endpoint: String, threads: Int = 1, corpus: Corpus = ClusterFixtures.corpus,
                     heartbeatTimeout: Double = 5, chunkDelay: ChunkDelay? = nil,
                     shardEndpoint: @escaping (String) -> String = { $0 }) throws -> WorkerHarness {
        let harness = try WorkerHarness(endpoint: endpoint, threads: threads, corpus: corpus, heartbeatTimeout: heartbeatTimeout,
                                        chunkDelay: chunkDelay, shardEndpoint: shardEndpoint)
        workers.append(harness)
        harness.start()
        return harness
    }

    /// Trains `config` with one worker per entry of `threads` (its K) and returns the outcome.
    func distributedRun(config: TrainingConfig, threads: [Int], directory: URL, resume: Bool = false,
                        file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory, resume: resume))
        let coordinator = try startCoordinator(session, workers: threads.count)
        let harnesses = try threads.map { try startWorker(coordinator.endpoint, threads: $0) }
        let result = try XCTUnwrap(coordinator.wait(timeout: 60, file: file, line: line), file: file, line: line)
        let summary = try result.get()
        XCTAssertEqual(summary.steps, config.steps, file: file, line: line)
        for worker in harnesses {
            let ended = try XCTUnwrap(worker.wait(timeout: 10, file: file, line: line), file: file, line: line)
            XCTAssertNoThrow(try ended.get(), "worker: \(worker.logs.text)", file: file, line: line)
        }
        return try ClusterFixtures.outcome(of: session, checkpoint: directory)
    }

    typealias Outcome = ClusterFixtures.Outcome

    /// `recur serve` without keys admits only workers with the job's token: every process a
    /// test starts inherits this one (as a job's processes get theirs from the environment).
    static let joinToken = "cluster-tests-token"

    override func setUp() {
        super.setUp()
        setenv("RECUR_JOIN_TOKEN", Self.joinToken, 1)
    }

    override func tearDown() {
        // SIGKILL works on stopped processes too; every wait is bounded.
        for process in processes where process.isRunning {
            process.send(SIGKILL)
            _ = process.waitForExit(timeout: 5)
        }
        processes = []
        for pid in grandchildren where Self.isAlive(pid) { kill(pid, SIGKILL) }
        grandchildren = []
        workers.forEach { $0.stop() }
        coordinators.forEach { $0.stop() }
        workers = []
        coordinators = []
        for directory in directories { try? FileManager.default.removeItem(at: directory) }
        directories = []
        super.tearDown()
    }
}

// MARK: Real processes

/// A child process of the built `recur` with stdout and stderr captured line by line.
final class RecurProcess: @unchecked Sendable {
    let arguments: [String]
    let stdout = LogLines()
    let stderr = LogLines()
    private let process = Process()
    private let exited = DispatchSemaphore(value: 0)
    /// Entered once per pipe; left at the pipe's end of file.
    private let reading = DispatchGroup()

    /// The built `recur`; nil when it is missing.
    static var executable: URL? { ProcessRunner.recurExecutable() }

    /// `environment` is added to this process's environment for the child.
    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        self.arguments = arguments
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let exited = self.exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        for (pipe, lines) in [(out, stdout), (err, stderr)] {
            let reading = self.reading
            reading.enter()
            let thread = Thread {
                defer { reading.leave() }
                let handle = pipe.fileHandleForReading
                var pending = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    pending.append(chunk)
                    while let newline = pending.firstIndex(of: 0x0A) {
                        lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                        pending.removeSubrange(pending.startIndex...newline)
                    }
                }
                if !pending.isEmpty { lines.append(String(decoding: pending, as: UTF8.self)) }
            }
            thread.start()
        }
    }

    var pid: pid_t { process.processIdentifier }

    /// Exit status (128 + signal when killed by a signal), or nil while still running
    /// after `timeout` seconds.
    func waitForExit(timeout: Double) -> Int32? {
        guard exited.wait(timeout: .now() + timeout) == .success else { return nil }
        exited.signal()  // stay signalled for later calls
        // Give the readers a moment to take the last lines out of the pipes.
        _ = reading.wait(timeout: .now() + 2)
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    var isRunning: Bool { process.isRunning }

    func send(_ signal: Int32) { if process.isRunning { kill(pid, signal) } }

    /// Everything it printed, for failure messages.
    var transcript: String {
        "$ recur \(arguments.joined(separator: " "))\n--- stdout\n\(stdout.text)\n--- stderr\n\(stderr.text)"
    }
}

extension ClusterTestCase {
    /// Whether `pid` is a live process (zombies count as gone).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    /// A loopback tcp endpoint on a port that was free a moment ago.
    func freeLoopbackEndpoint() throws -> String {
        let probe = try ZMQSocket(context: try ZMQContext(), kind: .router)
        defer { probe.close() }
        return try probe.bind("tcp://127.0.0.1:*")
    }

    /// `(rank, "worker r (host h, pid p)")` of the worker process `pid` from the
    /// coordinator's "… joined …" lines.
    static func joinedName(pid: pid_t, in lines: LogLines) -> (rank: Int, name: String)? {
        guard let line = lines.line(containing: [", pid \(pid)) joined"]),
              let start = line.range(of: "worker "), let end = line.range(of: ", pid \(pid))") else { return nil }
        let name = String(line[start.lowerBound..<end.upperBound])
        let rank = Int(name.dropFirst("worker ".count).prefix { $0.isNumber })
        return rank.map { ($0, name) }
    }

    /// Worker pids from "worker r (host h, pid p) joined" lines.
    static func joinedPids(in lines: LogLines) -> [pid_t] {
        lines.lines.compactMap { line in
            guard line.contains(") joined"), let range = line.range(of: ", pid ") else { return nil }
            return pid_t(line[range.upperBound...].prefix { $0.isNumber })
        }
    }
}
