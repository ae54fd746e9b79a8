import Foundation
import Recurrent
import Training
import Wire

/// Where a sharded run's parameter servers listen and how to reach them; the coordinator
/// holds the run's `ParameterUpdate` to set them up from and to gather them back into.
public struct ShardConnection {
    /// Shard k listens at `endpoints[k]`; S = `endpoints.count` ≥ 2.
    public var endpoints: [String]
    public var connect: (String) throws -> ClientTransport
    public var update: ParameterUpdate

    public init(endpoints: [String], connect: @escaping (String) throws -> ClientTransport, update: ParameterUpdate) {
        self.endpoints = endpoints
        self.connect = connect
        self.update = update
    }
}

/// The coordinator's side of its S parameter shards (ps-lite's scheduler-to-server links):
/// one client connection each; setup, commands to all, reports from all, liveness.
final class ShardLinks {
    let connection: ShardConnection
    let partition: SlabPartition
    let messengers: [ClientMessenger]
    private var lastHeard: [Double]
    /// Messages a `gather` did not take (a step's report that arrived during a checkpoint's
    /// state fetch); `poll` hands them out first.
    private var held: [(Int, DecodedMessage)] = []
    private var heartbeats: HeartbeatSchedule
    private let heartbeatTimeout: Double
    private let log: (String) -> Void

    init(_ connection: ShardConnection, plan: RunPlan, heartbeatTimeout: Double, log: @escaping (String) -> Void) throws {
        let maximum = SlabPartition.maximumShards(plan.layout)
        guard connection.endpoints.count <= maximum else {
            throw ClusterError.protocolViolation("--shards \(connection.endpoints.count): this model's parameters make at most \(maximum) shards")
        }
        self.connection = connection
        partition = SlabPartition(layout: plan.layout, shards: connection.endpoints.count)
        messengers = try connection.endpoints.map { ClientMessenger(transport: try connection.connect($0), log: log) }
        for messenger in messengers { messenger.limits = .sharded(layout: plan.layout) }
        lastHeard = Array(repeating: monotonicSeconds(), count: connection.endpoints.count)
        self.heartbeatTimeout = heartbeatTimeout
        heartbeats = HeartbeatSchedule(timeout: heartbeatTimeout)
        self.log = log
    }

    var count: Int { messengers.count }
    var transports: [AnyObject] { messengers.map { $0.transport } }
    var bounds: [UInt64] { partition.shards.map { UInt64($0.lowerBound) } + [UInt64(partition.shards.last!.upperBound)] }

    func name(_ k: Int) -> String { "shard \(k) (\(connection.endpoints[k]))" }

    /// Sends every shard its range of `update` as of `step` and waits until each is ready.
    func setUp(plan: RunPlan, step: Int, workerCount: Int, joinToken: String?, stop: StopRequest) throws {
        let update = connection.update
        let state = update.optimizer.stateBuffers
        for (k, range) in partition.shards.enumerated() {
            let setup = ShardSetup(
                runConfig: plan.config.canonicalJSON(), shard: UInt32(k), shardCount: UInt32(count), step: UInt64(step),
                workerCount: UInt32(workerCount),
                parameters: WireTensor(name: "slab", shape: [range.count], values: Array(update.parameters[range])),
                optimizerState: state.map { WireTensor(name: $0.name, shape: [range.count], values: Array($0.values[range])) },
                optimizerSteps: UInt64(update.optimizer.stepCount), joinToken: joinToken ?? "",
                vocabularySize: UInt32(plan.model.vocabularySize), labelCount: UInt32(plan.model.labelCount ?? 0))
            try messengers[k].send(.shardSetup(setup))
        }
        var ready = Set<Int>()
        do {
            try gather(stop: stop, what: "the shards' setup") { k, message in
                guard case .shardReport(let report) = message, report.kind == .ready else { return nil }
                ready.insert(k)
                return ready.count == count
            }
        } catch ClusterError.shardLost(let reason) where reason.contains("stopped answering") {
            // A shard started with a smaller --max-message-bytes never sees the setup: libzmq
            // drops it unread, and the shard stays silent. Say so, since the shard cannot.
            let bytes = ShardServer.maxMessageBytes(for: plan)
            throw ClusterError.shardLost("\(reason) after its setup: is `recur shard` running there with --max-message-bytes at least \(bytes) (this model's setup)? A larger message is dropped unread")
        }
        log("\(count) parameter shards ready: " + (0..<count).map { "\(name($0)) elements \(partition.shards[$0])" }.joined(separator: ", "))
    }

    /// A new assignment of `workers` workers from `step` on: every shard forgets its workers,
    /// waits for their hellos and then broadcasts the weights of `step`. Waits for every shard's
    /// answer, so that the workers' hellos (sent after their new Welcome) find them ready.
    ///
    /// A shard broadcasts the next step as soon as it applies one, so the old assignment's
    /// workers may already have pushed it and the shard reported its norm blocks before the
    /// reassign reached it. Such a report (held, or arriving before that shard's ready) belongs
    /// to sums the shard has since dropped: it is discarded. Taken, the coordinator would order an
    /// apply the shard cannot do (the test-cluster join failure, "shard 0 exited with status 1").
    /// `blockSizes`: the chunks of each rank's block, so that a shard knows which tree nodes
    /// each rank may push (`--balance` sizes them by speed).
    func reassign(tickets: [String], blockSizes: [Int], step: Int, resetState: Bool, stop: StopRequest) throws {
        held.removeAll { Self.isNormReport($0.1) }
        try send(ShardCommand(kind: .reassign, step: UInt64(step), resetState: resetState, workerCount: UInt32(tickets.count),
                              rankTickets: tickets, blockSizes: blockSizes.map { UInt32($0) }))
        var ready = Set<Int>()
        try gather(stop: stop, what: "the shards' new assignment") { k, message in
            if !ready.contains(k), Self.isNormReport(message) { return false }   // of the old assignment
            guard case .shardReport(let report) = message, report.kind == .ready, report.step == UInt64(step) else { return nil }
            ready.insert(k)
            return ready.count == count
        }
    }

    private static func isNormReport(_ message: DecodedMessage) -> Bool {
        if case .shardReport(let report) = message { return report.kind == .blockSquares }
        return false
    }

    /// Puts a message back for the next `poll` (it came before the wait that takes it).
    func hold(_ k: Int, _ message: DecodedMessage) { held.append((k, message)) }

    func send(_ command: ShardCommand) throws {
        for messenger in messengers { try messenger.send(.shardCommand(command)) }
    }

    /// Every message waiting from any shard (non-blocking), with its shard index; heartbeats
    /// only count as signs of life. Throws when a shard is silent past the heartbeat timeout
    /// or sent an error.
    func poll() throws -> [(Int, DecodedMessage)] {
        var messages = held
        held = []
        for (k, messenger) in messengers.enumerated() {
            while let message = try messenger.receive(timeout: 0) {
                lastHeard[k] = monotonicSeconds()
                switch message {
                case .heartbeat: continue
                case .error(let error): throw ClusterError.shardLost("\(name(k)) failed: \(error.message)")
                default: messages.append((k, message))
                }
            }
        }
        try checkAlive()
        return messages
    }

    func checkAlive() throws {
        let t = monotonicSeconds()
        if let k = lastHeard.indices.first(where: { t - lastHeard[$0] > heartbeatTimeout }) {
            throw ClusterError.shardLost("\(name(k)) stopped answering (no message for \(ClusterError.format(heartbeatTimeout)) s)")
        }
    }

    func sendHeartbeatsIfDue(step: Int) {
        guard heartbeats.isDue() else { return }
        for messenger in messengers { try? messenger.send(.heartbeat(Heartbeat(rank: 0, step: UInt64(step)))) }
    }

    /// Waits for shard messages until `take` says it has all it needs. A stop request ends the
    /// wait, except while fetching the state for a checkpoint (`finishing`): a stopping run
    /// still writes its last checkpoint; a dead shard ends the wait within the heartbeat timeout.
    /// `take` answers nil for a message that is not its own (kept for later, see `held`), false
    /// for one it took while more are needed, true when it has all.
    func gather(stop: StopRequest, what: String, finishing: Bool = false, _ take: (Int, DecodedMessage) throws -> Bool?) throws {
        while true {
            if !finishing { try stop.check() }
            sendHeartbeatsIfDue(step: 0)
            let messages = try poll()
            for (index, (k, message)) in messages.enumerated() {
                switch try take(k, message) {
                case true?:
                    held += messages[(index + 1)...]
                    return
                case false?:
                    continue
                case nil:
                    held.append((k, message))
                }
            }
            try waitForInput(transports, timeout: 0.2)
        }
    }

    /// Gathers every shard's weights and optimizer state into the coordinator's update.
    func fetchState(step: Int, stop: StopRequest) throws {
        try send(ShardCommand(kind: .sendState, step: UInt64(step)))
        let update = connection.update
        var buffers = update.optimizer.stateBuffers
        var steps = Set<UInt64>()
        var received = Set<Int>()
        try gather(stop: stop, what: "the shards' state", finishing: true) { k, message in
            guard case .shardReport(let report) = message, report.kind == .state else { return nil }
            let range = partition.shards[k]
            guard let parameters = report.parameters, parameters.values.count == range.count,
                  report.optimizerState.map(\.name) == buffers.map(\.name),
                  report.optimizerState.allSatisfy({ $0.values.count == range.count }) else {
                throw ClusterError.shardLost("\(name(k)) sent a state that does not fit its range \(range)")
            }
            _ = UnsafeMutableBufferPointer(rebasing: update.parameters[range]).update(from: parameters.values)
            for (b, tensor) in report.optimizerState.enumerated() { buffers[b].values.replaceSubrange(range, with: tensor.values) }
            steps.insert(report.optimizerSteps)
            received.insert(k)
            return received.count == count
        }
        guard steps.count == 1 else { throw ClusterError.shardLost("the shards disagree on the optimizer's step count: \(steps.sorted())") }
        try update.optimizer.restore(stepCount: Int(steps.first!), buffers: buffers)
    }

    func shutdown(reason: String) {
        for messenger in messengers {
            try? messenger.send(.shutdown(Shutdown(reason: reason)))
            messenger.transport.close()
        }
    }
}
