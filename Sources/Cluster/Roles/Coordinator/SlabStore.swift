import Recurrent
import Training
import Wire

/// One parameter server, this process: the coordinator broadcasts the weights, the workers push
/// their gradients here, and the loop's update is applied to the session's slab.
final class SlabStore: CoordinatorStore {
    private let local: LocalParameterStore

    init(_ update: ParameterUpdate) { local = LocalParameterStore(update) }

    var gradientComesHere: Bool { true }
    var transports: [AnyObject] { [] }
    var modeSuffix: String { "" }

    func start(step: Int, workerCount: Int, joinToken: String?, stop: StopRequest) throws {}

    func assign(blockSizes: [Int], step: Int, resetState: Bool, stop: StopRequest) throws -> [Placement] {
        Array(repeating: Placement(), count: blockSizes.count)
    }

    func awaitRanks(_ ranks: [Int], step: Int, timeout: Double, serve: () throws -> Void) throws -> (rank: Int, server: String)? { nil }

    func broadcast(_ request: StepRequest, layout: ParameterLayout, to peers: [PeerIdentity], messenger: ServerMessenger) throws {
        try messenger.broadcastWeights(step: request.step, resetState: request.stepInEpoch == 0, parameters: request.parameters,
                                       layout: layout, to: peers)
    }

    func expect(step: Int) {}
    func poll(step: Int) throws {}
    var isReduced: Bool { true }
    func checkOverdue(step: Int, pushedAt: Double, now: Double) throws {}

    func reduce(_ pushes: [PushAssembler], tree: ReductionTree, count: Int, into g: inout StepGradient) {
        tree.sum(pushes.map { $0.gradient.baseAddress! }, count: count, threads: 1)
        g.gradientSum = pushes[0].gradient.baseAddress!
    }

    func reissue(_ node: Range<Int>, owner: Int, helper: Int, step: Int) throws {}
    var reissuesTaken: Int { .max }
    func holdBack(rank: Int, step: Int) throws {}
    func release(rank: Int, step: Int) throws {}

    func sendHeartbeatsIfDue(step: Int) {}
    func finish(reason: String) {}

    func apply(_ g: StepGradient, step: Int) throws -> ParameterUpdate.Report { try local.apply(g, step: step) }
    func synchronize() throws {}
}
