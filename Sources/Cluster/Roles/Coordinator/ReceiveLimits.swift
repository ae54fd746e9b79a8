import Training

extension Coordinator {
    /// The coordinator socket's connection cap (`ConnectionLimit`): its members are the
    /// workers, up to one per chunk in an elastic run (`--min-workers`: workers may join
    /// mid-run), else the `workers` it was started for. With `decodeLimits(plan)` and
    /// `ZMQServerSettings.receiveQueue` it bounds what libzmq buffers for the coordinator in
    /// total: connections × (receiveQueue + 1) × maxMessageBytes.
    public static func maxConnections(_ plan: RunPlan, workers: Int, elastic: Bool) -> Int {
        ConnectionLimit.connections(members: elastic ? max(workers, plan.chunkCount) : workers)
    }
}
