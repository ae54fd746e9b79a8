/// Settings of the coordinator role that do not change the numbers of the run.
public struct CoordinatorOptions: Sendable {
    public var workers: Int
    /// A worker silent for this long is declared dead.
    public var heartbeatTimeout: Double = 30
    /// How long to wait for all workers to say hello.
    public var joinTimeout: Double = 300
    /// Fewer live workers than this ends the run; down to it, a lost worker's chunks go to the
    /// others and the step is computed again (nil: all `workers`, no loss tolerated).
    public var minWorkers: Int?
    var requiredWorkers: Int { min(workers, max(1, minWorkers ?? workers)) }
    /// In an elastic job (`minWorkers` set): once enough workers have joined, the run starts
    /// when no other has said hello for this long (a restarted coordinator does not wait its
    /// join timeout for a worker that died); later workers join at a step boundary.
    public var joinSettle: Double = 5
    /// Without CurveZMQ: the secret a worker's hello must carry to join (nil: no check, as
    /// with CurveZMQ, whose allow-list admits workers).
    public var joinToken: String?
    /// `--balance`: at step boundaries, size the workers' blocks by their measured compute per
    /// chunk (`ChunkBalancer`); false: equal blocks, as after a join.
    public var balance = true

    public init(workers: Int) { self.workers = workers }

    var heartbeatInterval: Double { HeartbeatSchedule.interval(forTimeout: heartbeatTimeout) }
}
