import Foundation

/// The launcher's supervision policy as a value: events in, actions out, no processes,
/// sockets, clocks or threads (the driver, `LaunchDriver`, does the I/O). Tested by feeding
/// events (Tests/ClusterTests/LaunchPolicyTests.swift).
///
///                 .begin: start shards, coordinator, workers (+ --timeout timer)
///   preparing ──────────────────────────────► running ◄──────────────┐
///                                              │  │  │                │ .checkpointChecked:
///        coordinator killed (signal ≠ HUP/INT/ │  │  │                │ start it (resume if any)
///        TERM, or ssh 255), restarts < max ────┘  │  └──► restarting ─┘
///                                                 │
///        a shard, or a worker with --min-workers = all, fails ──► failing (grace timer)
///        coordinator exits 0 ──► finished (grace timer while others run)
///
///   running / restarting / failing / finished ── signal N, --timeout, grace elapsed,
///   coordinator failed for good, failing's coordinator ended, all ended ──► stopping(status)
///   stopping ── .stopped ──► done(status): "job … succeeded|failed", exit status
///
/// Exit status: 0 the coordinator finished; 124 --timeout; 128+N signal N (HUP, INT, TERM);
/// else the first failure: the coordinator's status when it fails for good, or the failing
/// process's status (failing state).
public struct LaunchPolicy {
    public enum State: Equatable {
        case preparing
        /// The coordinator runs and nothing has failed the job.
        case running
        /// The coordinator died and will be started again; waiting for `.checkpointChecked`.
        case restarting(label: String, status: Int32)
        /// A process failed the job; the coordinator has --grace seconds to stop by itself.
        case failing(status: Int32)
        /// The coordinator finished the job; the others have --grace seconds to exit.
        case finished
        /// `.stopAll` was sent; waiting for `.stopped`.
        case stopping(status: Int32)
        case done(status: Int32)
    }

    public struct Configuration: Equatable {
        public var jobID: String
        public var hosts: [HostLine]
        public var coordinatorHost: Int
        public var shardHosts: [Int]
        /// rank → host index
        public var workerHosts: [Int]
        public var minWorkers: Int
        public var maxRestarts: Int
        public var grace: Int
        public var timeout: Int?
        public var checkpointDirectory: String

        public init(plan: LaunchPlan) {
            self.init(jobID: plan.jobID, hosts: plan.hosts, coordinatorHost: plan.coordinatorHost, shardHosts: plan.shardHosts,
                      workerHosts: plan.workerHost, minWorkers: plan.minWorkers, maxRestarts: plan.options.maxRestarts,
                      grace: plan.options.effectiveGrace, timeout: plan.options.timeout,
                      checkpointDirectory: plan.options.checkpointDirectory)
        }

        public init(jobID: String, hosts: [HostLine], coordinatorHost: Int, shardHosts: [Int], workerHosts: [Int],
                    minWorkers: Int, maxRestarts: Int, grace: Int, timeout: Int?, checkpointDirectory: String) {
            self.jobID = jobID
            self.hosts = hosts
            self.coordinatorHost = coordinatorHost
            self.shardHosts = shardHosts
            self.workerHosts = workerHosts
            self.minWorkers = minWorkers
            self.maxRestarts = maxRestarts
            self.grace = grace
            self.timeout = timeout
            self.checkpointDirectory = checkpointDirectory
        }
    }

    public private(set) var state = State.preparing
    public internal(set) var configuration: Configuration
    /// Running processes by id.
    public private(set) var running: [Int: LaunchProcess] = [:]
    public private(set) var restarts = 0
    private let initialWorkers: Int
    private var nextID = 0
    private var graceStarted = false
    /// The join being prepared (one at a time, in order), and those waiting.
    var joining: (reply: String, ranks: Range<Int>, host: Int)?
    var queuedJoins: [(reply: String, line: String)] = []

    public init(_ configuration: Configuration) {
        self.configuration = configuration
        initialWorkers = configuration.workerHosts.count
    }

    public mutating func handle(_ event: LaunchEvent) -> [LaunchAction] {
        switch event {
        case .begin: return begin()
        case .exited(let id, let status): return exited(id, status)
        case .signal(let signal): return interrupted(signal)
        case .timerElapsed(let timer): return elapsed(timer)
        case .checkpointChecked(let exists): return checkpointChecked(exists)
        case .joinRequested(let reply, let line): return joinRequested(reply, line)
        case .joinPrepared(let reply, let failure): return joinPrepared(reply, failure)
        case .stopped: return stopped()
        }
    }

    /// Whether the job still takes `--join` requests.
    var acceptsJoins: Bool {
        switch state {
        case .running, .restarting, .failing: return true
        default: return false
        }
    }

    // MARK: - starting

    private mutating func begin() -> [LaunchAction] {
        guard state == .preparing else { return [] }
        state = .running
        let c = configuration
        var actions = c.shardHosts.indices.map { k in start(.shard(k), host: c.shardHosts[k]) }
        actions.append(start(.coordinator, host: c.coordinatorHost))
        actions += c.workerHosts.indices.map { r in start(.worker(r), host: c.workerHosts[r]) }
        if let timeout = c.timeout { actions.append(.startTimer(.job, seconds: timeout)) }
        return actions
    }

    mutating func start(_ role: LaunchRole, host: Int, resume: Bool = false) -> LaunchAction {
        let target = configuration.hosts[host].target
        let label: String
        switch role {
        case .coordinator: label = "\(target) coordinator"
        case .shard(let k): label = "\(target) shard \(k)"
        case .worker(let r): label = "\(target) worker \(r)"
        }
        let process = LaunchProcess(id: nextID, role: role, host: host, label: label, resume: resume)
        nextID += 1
        running[process.id] = process
        return .start(process)
    }

    // MARK: - processes ending

    private mutating func exited(_ id: Int, _ status: Int32) -> [LaunchAction] {
        guard let process = running.removeValue(forKey: id) else { return [] }
        switch state {
        case .running, .restarting, .failing, .finished: break
        default: return []
        }
        if process.role == .coordinator { return coordinatorExited(process, status) }
        return otherExited(process, status) + stopIfNothingRuns()
    }

    /// A coordinator killed by a signal other than a stop request, or whose host ssh lost.
    static func restartable(_ status: Int32) -> Bool {
        status == 255 || (status > 128 && status < 193 && ![129, 130, 143].contains(status))
    }

    private mutating func coordinatorExited(_ process: LaunchProcess, _ status: Int32) -> [LaunchAction] {
        let said = "[\(process.label)] exited with status \(describeStatus(status))"
        if case .failing(let failure) = state { return stop(failure) }
        if status == 0 {
            state = .finished
            return [.log("[\(process.label)] finished the job")] + (running.isEmpty ? stop(0) : startGrace())
        }
        if Self.restartable(status) && restarts < configuration.maxRestarts {
            restarts += 1
            state = .restarting(label: process.label, status: status)
            return [.checkCheckpoint]
        }
        return [.log("\(said): stopping every process")] + stop(status)
    }

    private mutating func otherExited(_ process: LaunchProcess, _ status: Int32) -> [LaunchAction] {
        guard status != 0 else { return [] }
        let said = "[\(process.label)] exited with status \(describeStatus(status))"
        if state == .finished { return [.log("\(said) after the job finished")] }
        if case .worker = process.role, configuration.minWorkers < initialWorkers {
            return [.log("\(said): the coordinator goes on while at least \(configuration.minWorkers) worker(s) remain")]
        }
        switch state {
        case .failing:
            return [.log(said)]
        case .restarting:
            // No coordinator runs to checkpoint and stop by itself.
            return [.log("\(said): stopping every process")] + stop(status)
        default:
            state = .failing(status: status)
            return [.log("\(said): the job fails; waiting up to \(configuration.grace) s for the coordinator to stop, then stopping every process")]
                + startGrace()
        }
    }

    private mutating func checkpointChecked(_ exists: Bool) -> [LaunchAction] {
        guard case .restarting(let label, let status) = state else { return [] }
        state = .running
        let c = configuration, said = "[\(label)] exited with status \(describeStatus(status))"
        let line = exists
            ? "\(said): starting it again from its checkpoint in \(c.checkpointDirectory) (restart \(restarts) of \(c.maxRestarts)); the workers rejoin it"
            : "\(said): starting it again from step 0, no checkpoint yet in \(c.checkpointDirectory) (restart \(restarts) of \(c.maxRestarts))"
        return [.log(line), start(.coordinator, host: c.coordinatorHost, resume: exists)]
    }

    private mutating func stopIfNothingRuns() -> [LaunchAction] {
        guard running.isEmpty else { return [] }
        switch state {
        case .finished: return stop(0)
        case .failing(let status): return stop(status)
        default: return []
        }
    }

    // MARK: - timers, signals, the end

    private mutating func startGrace() -> [LaunchAction] {
        guard !graceStarted else { return [] }
        graceStarted = true
        return [.startTimer(.grace, seconds: configuration.grace)]
    }

    private mutating func elapsed(_ timer: LaunchTimer) -> [LaunchAction] {
        switch (timer, state) {
        case (.job, .running), (.job, .restarting), (.job, .failing), (.job, .finished):
            return [.log("--timeout \(configuration.timeout ?? 0) s elapsed: stopping every process")] + stop(124)
        case (.grace, .finished):
            return [.log("worker(s) still running \(configuration.grace) s after the coordinator finished: stopping them")] + stop(0)
        case (.grace, .failing(let status)):
            return [.log("the coordinator did not stop within \(configuration.grace) s of the failure: stopping every process")] + stop(status)
        default:
            return []
        }
    }

    private mutating func interrupted(_ signal: Int32) -> [LaunchAction] {
        switch state {
        case .stopping, .done: return []
        default: return [.log("interrupted (signal \(signalName(signal))): stopping every process")] + stop(128 + signal)
        }
    }

    mutating func stop(_ status: Int32) -> [LaunchAction] {
        state = .stopping(status: status)
        var actions: [LaunchAction] = [.stopAll]
        if let joining { actions.append(.reply(to: joining.reply, text: "refused: job \(configuration.jobID) is ending")) }
        actions += queuedJoins.map { .reply(to: $0.reply, text: "refused: job \(configuration.jobID) is ending") }
        joining = nil
        queuedJoins = []
        return actions
    }

    private mutating func stopped() -> [LaunchAction] {
        guard case .stopping(let status) = state else { return [] }
        state = .done(status: status)
        let line = status == 0 ? "job \(configuration.jobID) succeeded" : "job \(configuration.jobID) failed (exit status \(status))"
        return [.log(line), .exit(status)]
    }
}
