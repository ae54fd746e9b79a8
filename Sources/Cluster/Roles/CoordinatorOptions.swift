/// Settings of the coordinator role that do not change the numbers of the run.
public struct CoordinatorOptions: Sendable {
    public var workers: Int
    /// A worker silent for this long is declared dead.
    public var heartbeatTimeout: Double = 30
    /// How long to wait for all workers to say hello.
    public var joinTimeout: Double = 300

    public init(workers: Int) { self.workers = workers }

    var heartbeatInterval: Double { min(1, heartbeatTimeout / 5) }
}
