import Recurrent
import Training
import Wire

/// What a welcome gives a worker, and the step it is at: its rank, the run, its block of
/// streams with their carried state and gradient engine, the weights buffer (P floats) and
/// where weights come from and the gradient goes (`ParameterRoute`). A new welcome makes a
/// new one. A class, as `ShardRun`: it owns the buffers the compute thread works in.
final class WorkerAssignment {
    let rank: Int
    let workerCount: Int
    let plan: RunPlan
    /// This worker's global streams: whole chunks.
    let streams: Range<Int>
    let engine: any GradientComputing
    let state: CarriedState
    /// The weights of `step` once the route has them all; read by the compute thread.
    let parameters: UnsafeMutableBufferPointer<Float>
    var route: any ParameterRoute
    /// The step whose weights the worker waits for, or computes.
    var step: UInt64
    /// The step whose weights are all in `parameters` (nil before the first): a re-issued node
    /// is computed only with the weights of its own step.
    var weightsStep: UInt64?
    var times = StepTimes()
    /// The engine of the last node re-issued to this worker, kept: a straggler left with one
    /// chunk has the same node re-issued every step, and an engine's buffers (a P-float node
    /// sum among them) are not worth building each time.
    private var reissueEngine: (streams: Range<Int>, engine: any GradientComputing)?

    /// Checks `welcome` against the run it names before anything is built from it.
    init(welcome: Welcome, corpus: Corpus, options: WorkerOptions) throws {
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
        let state = CarriedState(model: plan.model, streams: streams.count)
        if !welcome.state.isEmpty {
            let own = 0..<streams.count
            if let problem = state.problem(with: welcome.state, streams: own) {
                throw ClusterError.protocolViolation("welcome state: \(problem)")
            }
            state.set(welcome.state, streams: own)
        }
        route = try makeRoute(for: welcome, layout: plan.layout, earlyFrom: config.earlyElements(of: plan.layout))
        engine = Self.engine(plan: plan, streams: streams, options: options)
        self.plan = plan
        rank = Int(welcome.rank)
        workerCount = Int(welcome.workerCount)
        self.streams = streams
        self.state = state
        step = welcome.step
        parameters = .allocate(capacity: plan.layout.count)
        parameters.initialize(repeating: 0)
    }

    deinit { parameters.deallocate() }

    /// The engine of a block of streams as this worker's options want it: real, emulated
    /// (`--emulate-compute`) or slowed per chunk (`--emulate-chunk-ms`).
    static func engine(plan: RunPlan, streams: Range<Int>, options: WorkerOptions) -> any GradientComputing {
        let computed: any GradientComputing = options.emulatedComputeMilliseconds.map {
            EmulatedCompute(milliseconds: $0, plan: plan, streams: streams)
        } ?? plan.engine(block: streams, threads: options.threads)
        return options.chunkDelay.map { ChunkDelayedCompute(computed, delay: $0) } ?? computed
    }

    /// An engine for `streams` (a re-issued node's), the kept one when the streams are the same.
    func reissueEngine(streams: Range<Int>, options: WorkerOptions) -> any GradientComputing {
        if let kept = reissueEngine, kept.streams == streams { return kept.engine }
        let engine = Self.engine(plan: plan, streams: streams, options: options)
        reissueEngine = (streams, engine)
        return engine
    }

    /// The coordinator's push of each node once the step is computed: loss, tokens, carried
    /// state, the step's times, and whatever of the gradient the route sends the coordinator.
    func finalPushes() -> [ClientAction] {
        let share = route.coordinatorShare(engine: engine)
        return engine.nodes.enumerated().map { i, node in
            let rows = plan.streams(ofChunks: node)
            let local = (rows.lowerBound - streams.lowerBound)..<(rows.upperBound - streams.lowerBound)
            return .pushToCoordinator(CoordinatorPush(
                step: step, chunks: node, gradient: gradient(ofNode: i), layout: plan.layout, slices: share.slices,
                part: share.part, parts: share.parts, tokenCount: UInt64(rows.count * plan.config.predictionsPerStream),
                lossSum: engine.nodeLoss[i], times: times.reported, state: state.wireTensors(streams: local)))
        }
    }

    func gradient(ofNode i: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: engine.gradient(ofNode: i), count: plan.layout.count)
    }
}

/// One step's forward and backward, for the driver's compute thread: the assignment's own
/// block, or a node re-issued to it (`reissued`). It holds the assignment (and the node), so
/// the weights, the carried state and the engine outlive the thread even when the worker
/// fails meanwhile (a lost parent).
struct ComputeJob: @unchecked Sendable {
    let assignment: WorkerAssignment
    let stepInEpoch: Int
    var reissued: ReissuedNode? = nil

    /// On the compute thread: `early` is called (on it) when the engine hands over the early
    /// part (never for a re-issued node: its parts leave together at the end).
    func run(early: @escaping (Range<Int>) -> Void) {
        let a = assignment
        if let node = reissued {
            _ = node.engine.computeGradient(parameters: UnsafePointer(a.parameters.baseAddress!), step: Int(node.step),
                                            stepInEpoch: stepInEpoch, from: node.state.recurrent, into: node.state.recurrent,
                                            early: nil)
            return
        }
        _ = a.engine.computeGradient(parameters: UnsafePointer(a.parameters.baseAddress!), step: Int(a.step),
                                     stepInEpoch: stepInEpoch, from: a.state.recurrent, into: a.state.recurrent,
                                     early: a.engine.earlySlices == nil ? nil : early)
    }
}

/// A step's times as a worker reports them with its last push, from the `now` of the events
/// that mark the step: weights complete (t0), compute started (t1) and finished (t2), the
/// last push sent. Compute: t2 − t1; communication: the previous step's (t1 − t0) + (sent −
/// t2); wait: t0 − the previous step's push (0 for an assignment's first step).
struct StepTimes {
    private var weightsAt = 0.0, computeStartedAt = 0.0, computeEndedAt = 0.0
    private var lastSentAt: Double?
    private var lastCommunicate = 0.0

    mutating func weightsComplete(at t0: Double) { weightsAt = t0 }

    mutating func computed(from t1: Double, to t2: Double) {
        computeStartedAt = t1
        computeEndedAt = t2
    }

    var reported: PushTimes {
        PushTimes(compute: computeEndedAt - computeStartedAt, communicate: lastCommunicate,
                  wait: lastSentAt.map { weightsAt - $0 } ?? 0)
    }

    mutating func sent(at now: Double) {
        lastSentAt = now
        lastCommunicate = (computeStartedAt - weightsAt) + (now - computeEndedAt)
    }
}
