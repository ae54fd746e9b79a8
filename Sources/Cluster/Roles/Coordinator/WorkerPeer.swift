import Training
import Wire

/// A worker as the coordinator knows it: who it is, which chunks (and so streams) it owns,
/// and its pushes for the current step: one per node of the
/// reduction tree its chunks cover (one, when its block is a node).
final class WorkerPeer {
    let identity: PeerIdentity
    let rank: Int
    let host: String
    let pid: Int
    let threads: Int
    /// Whole gradient chunks, contiguous, and their streams.
    let chunks: Range<Int>
    let streams: Range<Int>
    /// Arrival time of the current step's complete push.
    var arrival = 0.0
    /// Whether the log already said this worker is slow in the current step.
    var reportedSlow = false
    /// The tree nodes its block covers (global chunk indices), and a push for each.
    let nodes: [Range<Int>]
    let pushes: [PushAssembler]

    init(identity: PeerIdentity, rank: Int, hello: Hello, chunks: Range<Int>, plan: RunPlan, gradientAtShards: Bool = false) {
        self.identity = identity
        self.rank = rank
        host = hello.host
        pid = Int(hello.pid)
        threads = Int(hello.threads)
        self.chunks = chunks
        streams = plan.streams(ofChunks: chunks)
        nodes = ReductionTree.nodes(covering: chunks, in: 0..<plan.chunkCount)
        pushes = nodes.map {
            PushAssembler(layout: plan.layout, streams: plan.streams(ofChunks: $0), window: plan.config.predictionsPerStream,
                          gradientAtShards: gradientAtShards)
        }
    }

    var isComplete: Bool { pushes.allSatisfy(\.isComplete) }

    /// The push that `push` is part of: the node it names; nil when this worker holds no such node.
    func assembler(for push: DecodedGradientPush) -> PushAssembler? {
        push.chunks.flatMap { nodes.firstIndex(of: $0) }.map { pushes[$0] }
    }

    var name: String { "worker \(rank) (host \(host), pid \(pid))" }

    /// From the last node's push (every node's push carries the worker's timing).
    var timing: WorkerTiming {
        let t = pushes.last!.timing
        return WorkerTiming(rank: rank, computeSeconds: t.compute, communicateSeconds: t.communicate, waitSeconds: t.wait)
    }
}

/// A worker that failed, disconnected or went silent, and the error that names it.
struct WorkerLost: Error {
    let identity: PeerIdentity
    let error: ClusterError
}

extension Array where Element == WorkerPeer {
    /// A send that failed, as the loss of the worker it was for.
    func lost(_ error: TransportError, step: Int) -> WorkerLost {
        let peer: PeerIdentity
        switch error { case .peerGone(let p), .sendTimedOut(let p, _): peer = p }
        let name = first { $0.identity == peer }?.name ?? "a worker"
        switch error {
        case .peerGone:
            return WorkerLost(identity: peer, error: .workerFailed("\(name) is gone (connection closed) at step \(step + 1)"))
        case .sendTimedOut(_, let seconds):
            return WorkerLost(identity: peer, error: .workerFailed("\(name) does not take messages (send timed out after \(ClusterError.format(seconds)) s) at step \(step + 1)"))
        }
    }
}
