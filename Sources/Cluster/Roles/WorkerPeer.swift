import Training
import Wire

/// A worker as the coordinator knows it: who it is, which chunks (and so streams) it owns,
/// when it was last heard from, and its push for the current step.
final class WorkerPeer {
    let identity: PeerIdentity
    let rank: Int
    let host: String
    let pid: Int
    let threads: Int
    /// Whole gradient chunks, contiguous, and their streams.
    let chunks: Range<Int>
    let streams: Range<Int>
    var lastSeen: Double
    /// Arrival time of the current step's complete push.
    var arrival = 0.0
    /// Whether the log already said this worker is slow in the current step.
    var reportedSlow = false
    let push: PushAssembler

    init(identity: PeerIdentity, rank: Int, hello: Hello, chunks: Range<Int>, plan: RunPlan) {
        self.identity = identity
        self.rank = rank
        host = hello.host
        pid = Int(hello.pid)
        threads = Int(hello.threads)
        self.chunks = chunks
        streams = plan.streams(ofChunks: chunks)
        lastSeen = monotonicSeconds()
        push = PushAssembler(layout: plan.layout, streams: streams, window: plan.config.window)
    }

    var name: String { "worker \(rank) (host \(host), pid \(pid))" }

    var timing: WorkerTiming {
        WorkerTiming(rank: rank, computeSeconds: push.timing.compute, communicateSeconds: push.timing.communicate,
                     waitSeconds: push.timing.wait)
    }
}

extension Array where Element == WorkerPeer {
    /// A send that failed, as the run-ending error naming the worker.
    func failure(_ error: TransportError, step: Int) -> ClusterError {
        let peer: PeerIdentity
        switch error { case .peerGone(let p), .sendTimedOut(let p, _): peer = p }
        let name = first { $0.identity == peer }?.name ?? "a worker"
        switch error {
        case .peerGone: return .workerFailed("\(name) is gone (connection closed) at step \(step + 1)")
        case .sendTimedOut(_, let seconds):
            return .workerFailed("\(name) does not take messages (send timed out after \(ClusterError.format(seconds)) s) at step \(step + 1)")
        }
    }
}
