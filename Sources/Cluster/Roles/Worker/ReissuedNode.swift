import Training
import Wire

/// A node of another worker's block that the coordinator re-issued to this idle worker
/// (`Reissue`, `--balance on`): its chunks, an engine for their streams and their carried
/// state as of the start of `step`. It is computed with the assignment's weights of the same
/// step and pushed as the owner would push it, in the same parts and to the same servers (the
/// coordinator, or every shard, which the coordinator told to take it); the first complete
/// copy counts. The state it computes is pushed and then dropped: the streams are not
/// this worker's.
final class ReissuedNode {
    let step: UInt64
    let chunks: Range<Int>
    let engine: any GradientComputing
    /// (L, n, H) for the node's n streams: the start of `step` in, the end of it out.
    let state: CarriedState
    private let plan: RunPlan

    /// Checks `reissue` against the run before anything is built: one node of the reduction
    /// tree within the run's chunks, and state of its streams' shape with finite values.
    init(_ reissue: Reissue, assignment a: WorkerAssignment, options: WorkerOptions) throws {
        let plan = a.plan
        guard let chunks = reissue.chunks, chunks.upperBound <= plan.chunkCount,
              ReductionTree.nodes(covering: chunks, in: 0..<plan.chunkCount) == [chunks] else {
            throw ClusterError.protocolViolation("reissue of chunks \(reissue.chunkBegin)..<\(reissue.chunkEnd), not one node of the reduction tree over \(plan.chunkCount) chunks")
        }
        let streams = plan.streams(ofChunks: chunks)
        let state = CarriedState(model: plan.model, streams: streams.count)
        if let problem = state.problem(with: reissue.state, streams: 0..<streams.count) {
            throw ClusterError.protocolViolation("reissue state: \(problem)")
        }
        // As the coordinator's loop holds it: already zero when the step starts an epoch.
        state.set(reissue.state, streams: 0..<streams.count)
        step = reissue.step
        self.chunks = chunks
        self.state = state
        self.plan = plan
        engine = a.reissueEngine(streams: streams, options: options)
    }

    /// The node's pushes as its owner sends them through `route` (to the coordinator in its
    /// parts, or to every shard), the coordinator's last with loss, tokens and state.
    func pushes(route: any ParameterRoute, computeSeconds: Double) -> [ClientAction] {
        let layout = plan.layout
        let gradient = UnsafeBufferPointer(start: engine.gradient(ofNode: 0), count: layout.count)
        var pushes = route.copyPushes(step: step, chunks: chunks, gradient: gradient, engine: engine)
        let share = route.coordinatorShare(engine: engine)
        let streams = plan.streams(ofChunks: chunks)
        pushes.append(.pushToCoordinator(CoordinatorPush(
            step: step, chunks: chunks, gradient: gradient, layout: layout, slices: share.slices, part: share.part,
            parts: share.parts, tokenCount: UInt64(streams.count * plan.config.predictionsPerStream),
            lossSum: engine.nodeLoss[0], times: PushTimes(compute: computeSeconds), state: state.wireTensors(streams: 0..<streams.count))))
        return pushes
    }
}
