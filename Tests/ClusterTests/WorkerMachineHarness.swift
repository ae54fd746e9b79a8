import XCTest
@testable import Cluster
import Recurrent
import Training
import Wire

/// A `WorkerMachine` fed by hand, with no sockets, threads or sleeps: messages are encoded and
/// decoded as the driver would, the clock is `now`, and the actions are read back. The run is
/// `ClusterFixtures`' tiny one (4 chunks of 2 streams); the coordinator's heartbeat timeout is
/// 10 s, its reconnect timeout 20 s.
class WorkerMachineTestCase: XCTestCase {
    let pid = 4242
    var plan: RunPlan!
    var machine: WorkerMachine!
    var now = 100.0

    override func setUpWithError() throws {
        plan = try RunPlan(config: ClusterFixtures.tinyConfig(steps: 5), corpus: ClusterFixtures.corpus)
        machine = makeMachine()
    }

    func makeMachine(reconnectTimeout: Double = 20) -> WorkerMachine {
        var options = WorkerOptions(endpoint: "tcp://coordinator:5555", threads: 1)
        options.heartbeatTimeout = 10
        options.reconnectTimeout = reconnectTimeout
        options.joinToken = "worker-machine-token"
        let hello = Fingerprint.hello(corpus: ClusterFixtures.corpus, threads: 1, joinToken: options.joinToken)
        return WorkerMachine(setup: .init(options: options, corpus: ClusterFixtures.corpus, hello: hello, pid: pid))
    }

    // MARK: Feeding

    @discardableResult
    func handle(_ event: ClientEvent) -> [ClientAction] { machine.handle(event, now: now) }

    /// Encodes and decodes `message` as the driver would, and feeds it from `sender`.
    @discardableResult
    func feed(_ message: Message, from sender: Sender = .coordinator) throws -> [ClientAction] {
        try WireCodec.encode(message).withUnsafeBytes { bytes in
            machine.handle(.received(from: sender, try WireCodec.decode(bytes, limits: .standard)), now: now)
        }
    }

    func welcome(rank: UInt32 = 0, workers: UInt32 = 2, streams: Range<UInt32> = 0..<4, step: UInt64 = 0,
                 shards: Int = 0) -> Welcome {
        var welcome = Welcome(rank: rank, workerCount: workers, runConfig: plan.config.canonicalJSON(),
                              streamBegin: streams.lowerBound, streamEnd: streams.upperBound, step: step)
        if shards > 0 {
            welcome.shardEndpoints = (0..<shards).map { "tcp://shard\($0):6000" }
            welcome.shardBounds = SlabPartition(layout: plan.layout, shards: shards).shards.map { UInt64($0.lowerBound) }
                + [UInt64(plan.layout.count)]
            welcome.rankTicket = "ticket-\(rank)"
        }
        return welcome
    }

    /// Whole weights from the coordinator: element i is `value(i)`.
    func weights(step: UInt64, resetState: Bool = false, value: (Int) -> Float = { Float($0 % 7) / 10 }) -> Message {
        let values = (0..<plan.layout.count).map(value)
        return .weights(Weights(step: step, resetState: resetState,
                                tensors: plan.layout.slices.map { WireTensor(name: $0.name, shape: $0.shape, values: Array(values[$0.range])) }))
    }

    /// Shard weights: elements `range` of the slab, element i is `value(i)`.
    func slabWeights(step: UInt64, range: Range<Int>, resetState: Bool = false, value: (Int) -> Float = { Float($0 % 5) }) -> Message {
        .weights(Weights(step: step, resetState: resetState,
                         tensors: [WireTensor(name: "slab", shape: [range.count], values: range.map(value))],
                         offset: UInt64(range.lowerBound)))
    }

    /// One representative message of every kind.
    func sample(_ kind: MessageKind) -> Message {
        switch kind {
        case .hello: return .hello(Fingerprint.hello(corpus: ClusterFixtures.corpus, threads: 1))
        case .welcome: return .welcome(welcome())
        case .weights: return weights(step: 0)
        case .gradientPush:
            return .gradientPush(GradientPush(step: 0, tokenCount: 1, lossSum: 0, tensors: [], computeSeconds: 0, communicateSeconds: 0))
        case .heartbeat: return .heartbeat(Heartbeat(rank: 0, step: 0))
        case .shutdown: return .shutdown(Shutdown(reason: "over"))
        case .error: return .error(WireErrorMessage(message: "broken"))
        case .shardSetup:
            return .shardSetup(ShardSetup(runConfig: "{}", shard: 0, shardCount: 2, step: 0, workerCount: 1,
                                          parameters: WireTensor(name: "slab", shape: [1], values: [0]), optimizerState: [],
                                          optimizerSteps: 0, vocabularySize: 1))
        case .shardCommand: return .shardCommand(ShardCommand(kind: .sendState, step: 0))
        case .shardReport: return .shardReport(ShardReport(kind: .ready, step: 0))
        case .reissue: return .reissue(Reissue(step: 0, chunkBegin: 0, chunkEnd: 2, state: []))
        }
    }

    // MARK: Getting to each state

    /// Hello sent, welcome in: working on rank 0's streams 0..<4 (chunks 0 and 1) from step 1.
    func working(shards: Int = 0) throws -> WorkerAssignment {
        handle(.tick)
        try feed(.welcome(welcome(shards: shards)))
        return try XCTUnwrap(machine.assignment)
    }

    /// Working, then the weights of step 1: computing.
    func computing() throws -> ComputeJob {
        _ = try working()
        return try XCTUnwrap(job(try feed(weights(step: 0))))
    }

    // MARK: Reading actions

    func logs(_ actions: [ClientAction]) -> [String] {
        actions.compactMap { if case .log(let line) = $0 { return line } else { return nil } }
    }

    func sent(_ actions: [ClientAction]) -> [Message] {
        actions.compactMap { if case .send(let m, _) = $0 { return m } else { return nil } }
    }

    func sentHello(_ actions: [ClientAction]) -> Bool {
        sent(actions).contains { if case .hello = $0 { return true } else { return false } }
    }

    func failure(_ actions: [ClientAction]) -> Error? {
        actions.lazy.compactMap { if case .fail(let e) = $0 { return e } else { return nil } }.first
    }

    func finishes(_ actions: [ClientAction]) -> Bool {
        actions.contains { if case .finish = $0 { return true } else { return false } }
    }

    func job(_ actions: [ClientAction]) -> ComputeJob? {
        actions.lazy.compactMap { if case .startCompute(let job) = $0 { return job } else { return nil } }.first
    }

    func coordinatorPushes(_ actions: [ClientAction]) -> [CoordinatorPush] {
        actions.compactMap { if case .pushToCoordinator(let p) = $0 { return p } else { return nil } }
    }

    func shardPushes(_ actions: [ClientAction]) -> [(shard: Int, push: SlabPush)] {
        actions.compactMap { if case .pushToShard(let k, let p) = $0 { return (k, p) } else { return nil } }
    }

    func closesShardLinks(_ actions: [ClientAction]) -> Bool {
        actions.contains { if case .closeShardLinks = $0 { return true } else { return false } }
    }

    var state: String { "\(machine.state)".components(separatedBy: "(").first! }
}
