import Recurrent
import Training
import Wire

/// Where a worker's weights come from and where its gradient goes: the one thing a sharded
/// run changes for a worker. `WeightsFromCoordinator` (one parameter server) or
/// `WorkerShards` (`--shards S`); `WorkerMachine` never asks which.
protocol ParameterRoute {
    /// What opens the route once the assignment starts: the shards' links and hellos.
    func open(hello: Hello) -> [ClientAction]
    /// Takes one weights message of the awaited step into `parameters`.
    mutating func take(_ weights: DecodedWeights, from sender: Sender,
                       into parameters: UnsafeMutableBufferPointer<Float>) throws -> WeightsTaken
    /// The pushes of the early part (the engine's final `slices` while backward goes on).
    func earlyPushes(step: UInt64, slices: Range<Int>, assignment: WorkerAssignment) -> [ClientAction]
    /// The pushes of what is left of the gradient, before the coordinator's last pushes.
    func restPushes(step: UInt64, assignment: WorkerAssignment) -> [ClientAction]
    /// What of the gradient the coordinator's last push of each node carries, as which part.
    func coordinatorShare(engine: any GradientComputing) -> (slices: Range<Int>, part: Int, parts: Int)
    /// The pushes of a re-issued node's `gradient` other than the coordinator's last one, in
    /// the parts its owner uses: the node's whole range to each shard, or the early run.
    func copyPushes(step: UInt64, chunks: Range<Int>, gradient: UnsafeBufferPointer<Float>,
                    engine: any GradientComputing) -> [ClientAction]
    /// Whether weights of the next step have begun to arrive (from some shards, not all):
    /// `parameters` then no longer hold one step's weights.
    var isTakingWeights: Bool { get }
}

enum WeightsTaken: Equatable {
    /// More weights of the step are to come (from other shards).
    case partial
    /// The step's weights are all in; `resetState`: the step starts an epoch.
    case complete(resetState: Bool)
}

/// The route a welcome names: its shards, or the coordinator when it names none.
func makeRoute(for welcome: Welcome, layout: ParameterLayout, earlyFrom: Int?) throws -> any ParameterRoute {
    guard !welcome.shardEndpoints.isEmpty else { return WeightsFromCoordinator(layout: layout) }
    return try WorkerShards(welcome: welcome, layout: layout, earlyFrom: earlyFrom)
}

/// One parameter server: the coordinator sends the whole weights and takes every node's whole
/// gradient, the top layer's and head's (`GradientEngine.earlySlices`) as part 0 of 2 while
/// the lower layers are still in backward, the rest as the last part.
struct WeightsFromCoordinator: ParameterRoute {
    let layout: ParameterLayout

    func open(hello: Hello) -> [ClientAction] { [.closeShardLinks] }

    func take(_ weights: DecodedWeights, from sender: Sender,
              into parameters: UnsafeMutableBufferPointer<Float>) throws -> WeightsTaken {
        guard sender == .coordinator else {
            throw ClusterError.protocolViolation("weights from a shard of a run without shards")
        }
        do {
            try weights.copyTensors(into: parameters, layout: layout)
        } catch {
            throw ClusterError.protocolViolation("weights for step \(oneBased(weights.step)) do not fit this model: \(error)")
        }
        return .complete(resetState: weights.resetState)
    }

    func earlyPushes(step: UInt64, slices: Range<Int>, assignment: WorkerAssignment) -> [ClientAction] {
        assignment.engine.nodes.enumerated().map { i, node in
            .pushToCoordinator(CoordinatorPush(step: step, chunks: node, gradient: assignment.gradient(ofNode: i),
                                               layout: layout, slices: slices, part: 0, parts: 2))
        }
    }

    func restPushes(step: UInt64, assignment: WorkerAssignment) -> [ClientAction] { [] }

    func copyPushes(step: UInt64, chunks: Range<Int>, gradient: UnsafeBufferPointer<Float>,
                    engine: any GradientComputing) -> [ClientAction] {
        guard let early = engine.earlySlices else { return [] }
        return [.pushToCoordinator(CoordinatorPush(step: step, chunks: chunks, gradient: gradient, layout: layout,
                                                   slices: early, part: 0, parts: 2))]
    }

    var isTakingWeights: Bool { false }   // one message brings them all

    func coordinatorShare(engine: any GradientComputing) -> (slices: Range<Int>, part: Int, parts: Int) {
        guard let early = engine.earlySlices else { return (0..<layout.slices.count, 0, 1) }
        return (0..<early.lowerBound, 1, 2)
    }
}
