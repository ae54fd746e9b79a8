import Foundation

/// The supervision policy of a Slurm job (`cluster/slurm.sbatch` → `recur launch --slurm`):
/// the coordinator runs in the batch step, all workers in one `srun` (which ends when every
/// worker task has ended). Events in, actions out, no I/O (SlurmDriver does it); tested in
/// Tests/ClusterTests/SlurmPolicyTests.swift.
///
///   starting ── .begin ──► running ── coordinator killed (not HUP/INT/TERM), restarts < max,
///                           │  ▲        srun still running ──► restarting ── .checkpointChecked ─┐
///                           │  └────────────────────────────────────────────────────────────────┘
///                           ├─ coordinator exits 0, srun runs ──► awaitingWorkers (grace) ──► done(0)
///                           ├─ srun ends ──► awaitingCoordinator (grace) ──► done(0 | status)
///                           ├─ TERM/INT ──► stoppingCoordinator: TERM to it (it checkpoints),
///                           │               grace ──► done(128+N)
///                           └─ coordinator failed for good ──► done(its status)
public struct SlurmPolicy {
    public enum State: Equatable {
        case starting
        case running
        case restarting(status: Int32)
        /// srun ended with `workers`; the coordinator has --grace seconds to end.
        case awaitingCoordinator(workers: Int32)
        /// The coordinator finished; srun has --grace seconds to end.
        case awaitingWorkers
        /// A stop signal: the coordinator got TERM and has --grace seconds to checkpoint.
        case stoppingCoordinator(status: Int32)
        case done(status: Int32)
    }

    public enum Event: Equatable {
        /// `requeued`: Slurm started this job again (SLURM_RESTART_COUNT) with a checkpoint at
        /// hand and no --resume given.
        case begin(requeued: Int?)
        case coordinatorExited(Int32)
        case workersExited(Int32)
        case signal(Int32)
        case graceElapsed
        case checkpointChecked(exists: Bool)
    }

    public enum Action: Equatable {
        case startCoordinator(resume: Bool)
        /// The shards (if any) and the workers' srun.
        case startWorkers
        case log(String)
        case terminateCoordinator
        case startGrace(seconds: Int)
        case checkCheckpoint
        /// Stop what still runs, delete the keys, exit with this status.
        case exit(Int32)
    }

    public private(set) var state = State.starting
    public private(set) var restarts = 0
    let grace: Int
    let maxRestarts: Int
    let checkpointDirectory: String

    public init(grace: Int, maxRestarts: Int, checkpointDirectory: String) {
        self.grace = grace
        self.maxRestarts = maxRestarts
        self.checkpointDirectory = checkpointDirectory
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.starting, .begin(let requeued)):
            state = .running
            let said: [Action] = requeued.map {
                [.log("Slurm started this job again (restart \($0)): resuming from the checkpoint in \(checkpointDirectory)")]
            } ?? []
            return said + [.startCoordinator(resume: requeued != nil), .startWorkers]
        case (.running, .coordinatorExited(let status)): return coordinatorExited(status)
        case (.running, .workersExited(let status)):
            state = .awaitingCoordinator(workers: status)
            let said: [Action] = status == 0 ? [] : [.log("every worker has ended (srun exited with status \(status)): waiting up to \(grace) s for the coordinator to stop")]
            return said + [.startGrace(seconds: grace)]
        case (.running, .signal(let signal)):
            state = .stoppingCoordinator(status: 128 + signal)
            return [.log("signal \(signalName(signal)): the coordinator checkpoints at its next step boundary"),
                    .terminateCoordinator, .startGrace(seconds: grace)]
        case (.restarting(let status), .checkpointChecked(let exists)):
            state = .running
            let line = exists
                ? "the coordinator exited with status \(status): starting it again from its checkpoint in \(checkpointDirectory) (restart \(restarts) of \(maxRestarts)); the workers rejoin it"
                : "the coordinator exited with status \(status): starting it again from step 0, no checkpoint yet (restart \(restarts) of \(maxRestarts))"
            return [.log(line), .startCoordinator(resume: exists)]
        case (.restarting, .signal(let signal)):
            return finish(128 + signal)   // no coordinator to checkpoint
        case (.restarting, .workersExited(let status)):
            return [.log("every worker has ended (srun exited with status \(status)) while the coordinator was down")] + finish(status == 0 ? 1 : status)
        default:
            return waiting(event)
        }
    }

    /// A coordinator killed by a signal other than a stop request: worth starting again.
    static func restartable(_ status: Int32) -> Bool {
        status > 128 && status < 193 && ![129, 130, 143].contains(status)
    }

    private mutating func coordinatorExited(_ status: Int32) -> [Action] {
        if status == 0 {
            state = .awaitingWorkers
            return [.log("the coordinator finished the job"), .startGrace(seconds: grace)]
        }
        if Self.restartable(status) && restarts < maxRestarts {
            restarts += 1
            state = .restarting(status: status)
            return [.checkCheckpoint]
        }
        return [.log("the coordinator exited with status \(status): stopping the workers")] + finish(status)
    }

    /// The states that wait (at most --grace) for one process; stop signals change nothing there.
    private mutating func waiting(_ event: Event) -> [Action] {
        let late: Action = .log("still running \(grace) s later: stopping it")
        switch (state, event) {
        case (.awaitingCoordinator(let workers), .coordinatorExited(let status)):
            if status == 0 { return [.log("the coordinator finished the job")] + finish(0) }
            return (workers == 0 ? [.log("the coordinator exited with status \(status)")] : []) + finish(workers == 0 ? status : workers)
        case (.awaitingCoordinator(let workers), .graceElapsed):
            return [late] + (workers == 0 ? [.log("the coordinator exited with status 124")] + finish(124) : finish(workers))
        case (.awaitingWorkers, .workersExited(let status)):
            return (status == 0 ? [] : [.log("workers ended with status \(status) after the job finished")]) + finish(0)
        case (.awaitingWorkers, .graceElapsed):
            return [late, .log("workers ended with status 124 after the job finished")] + finish(0)
        case (.stoppingCoordinator(let status), .coordinatorExited):
            return finish(status)
        case (.stoppingCoordinator(let status), .graceElapsed):
            return [late] + finish(status)
        default:
            return []
        }
    }

    private mutating func finish(_ status: Int32) -> [Action] {
        state = .done(status: status)
        return [.exit(status)]
    }
}
