import Foundation

/// A Slurm job's settings: from Slurm's environment (SLURM_*), the RECUR_* variables of
/// cluster/slurm.sbatch's header and the serve flags. No I/O: the node names and the first
/// node's address come in from the caller (`scontrol`).
public struct SlurmSettings: Equatable {
    public var jobID: String
    public var binary: String
    public var port: Int
    public var grace: Int
    public var threads: Int
    public var workers: Int
    public var nodes: [String]
    /// What workers connect to: RECUR_COORDINATOR_ADDRESS, else the first node's NodeAddr.
    public var address: String
    public var serveArguments: [String]
    public var dataArguments: [String] = []
    public var checkpointDirectory = "checkpoints/recur"
    public var resumeGiven = false
    public var shards: Int
    /// The shards' `--max-message-bytes` (the run's setup size, computed from the serve flags
    /// by the caller); nil: their default.
    public var shardMessageBytes: Int?
    public var minWorkers: Int
    public var maxRestarts: Int
    public var heartbeat: [String]
    public var insecure: Bool
    /// Node-local directory of the job's keys: RECUR_KEY_DIR (default /tmp)/recur-slurm.JOBID.
    public var nodeKeys: String
    public var restartCount: Int

    public typealias UsageError = LaunchOptions.UsageError

    public init(environment e: [String: String], binary: String, nodes: [String], nodeAddress: String?,
                serveArguments: [String]) throws {
        guard let job = e["SLURM_JOB_ID"], let jobNumber = Int(job) else { throw UsageError("run me with sbatch (no SLURM_JOB_ID)") }
        jobID = job
        self.binary = binary
        self.nodes = nodes
        port = e["RECUR_PORT"].flatMap(Int.init) ?? 20000 + jobNumber % 10000
        grace = e["RECUR_GRACE"].flatMap(Int.init) ?? 30
        threads = e["SLURM_CPUS_PER_TASK"].flatMap(Int.init) ?? 1
        workers = e["SLURM_NTASKS"].flatMap(Int.init) ?? 1
        address = e["RECUR_COORDINATOR_ADDRESS"] ?? nodeAddress ?? nodes.first ?? "localhost"
        self.serveArguments = serveArguments
        let shardText = e["RECUR_SHARDS"] ?? "\(max(1, nodes.count))"
        guard let shards = wholeNumber(shardText), shards >= 1 else { throw UsageError("RECUR_SHARDS must be a positive whole number, got '\(shardText)'") }
        self.shards = shards
        let minimum = e["RECUR_MIN_WORKERS"] ?? "\(max(1, workers / 2))"
        guard let minWorkers = wholeNumber(minimum), minWorkers >= 1, minWorkers <= workers else {
            throw UsageError("RECUR_MIN_WORKERS must be 1...\(workers), got '\(minimum)'")
        }
        self.minWorkers = minWorkers
        let restarts = e["RECUR_MAX_RESTARTS"] ?? "3"
        guard let maxRestarts = wholeNumber(restarts) else { throw UsageError("RECUR_MAX_RESTARTS must be a whole number, got '\(restarts)'") }
        self.maxRestarts = maxRestarts
        heartbeat = e["RECUR_HEARTBEAT_TIMEOUT"].flatMap { $0.isEmpty ? nil : ["--heartbeat-timeout", $0] } ?? []
        insecure = e["RECUR_INSECURE"] == "1"
        nodeKeys = "\(e["RECUR_KEY_DIR"] ?? "/tmp")/recur-slurm.\(job)"
        restartCount = e["SLURM_RESTART_COUNT"].flatMap(Int.init) ?? 0
        try readServeArguments()
    }

    private mutating func readServeArguments() throws {
        let owned: Set = ["--workers", "--bind", "--key", "--authorized-keys", "--insecure"]
        for (i, argument) in serveArguments.enumerated() {
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            let next = i + 1 < serveArguments.count ? serveArguments[i + 1] : nil
            if owned.contains(name) { throw UsageError("do not pass \(name): this script sets it (tasks, RECUR_PORT, RECUR_INSECURE)") }
            if name == "--min-workers" { throw UsageError("set RECUR_MIN_WORKERS instead of --min-workers") }
            switch argument {
            case "--data":
                guard let next else { throw UsageError("--data needs a value") }
                dataArguments = ["--data", next]
            case "--checkpoint", "--checkpoint-dir":
                guard let next else { throw UsageError("\(argument) needs a value") }
                checkpointDirectory = next
            case "--resume": resumeGiven = true
            default:
                if name == "--data" { dataArguments = ["--data", String(argument.dropFirst("--data=".count))] }
                if name == "--checkpoint" || name == "--checkpoint-dir" { checkpointDirectory = String(argument.dropFirst(name.count + 1)) }
            }
        }
    }

    public var summary: String {
        let shardText = shards > 1 ? ", \(shards) parameter shards" : ""
        return "job \(jobID): coordinator on \(nodes.first ?? "?") (tcp://\(address):\(port)), \(workers) worker(s) x \(threads) thread(s) on \(nodes.count) node(s), going on with at least \(minWorkers)\(shardText)"
    }

    /// Shard k on node k mod N (srun's cyclic distribution) at port + 1 + k div N.
    public func shardEndpoints(nodeAddresses: [String]) -> String {
        (0..<shards).map { k in "tcp://\(nodeAddresses[k % nodes.count]):\(port + 1 + k / nodes.count)" }.joined(separator: ",")
    }

    /// `recur serve` in the batch step; a restart resumes (and drops --init-from).
    public func coordinatorArguments(resume: Bool, keys: [String], shardArguments: [String]) -> [String] {
        [binary, "serve", "--bind", "tcp://*:\(port)", "--workers", "\(workers)", "--min-workers", "\(minWorkers)"]
            + shardArguments + keys + heartbeat + (resume ? LaunchPlan.resumed(serveArguments) : serveArguments)
    }

    /// One `srun` for every worker task; a dead task leaves the others running.
    public func workerArguments(keys: [String]) -> [String] {
        ["srun", "--kill-on-bad-exit=0", "--label", "--cpus-per-task=\(threads)", "--ntasks=\(workers)",
         binary, "work", "--connect", "tcp://\(address):\(port)", "--threads", "\(threads)"] + dataArguments + keys + heartbeat
    }

    /// One `srun` for the shards, each binding its port by its task number.
    public func shardArguments(keys: [String]) -> [String] {
        ["srun", "--overlap", "--kill-on-bad-exit=0", "--label", "--ntasks=\(shards)", "--distribution=cyclic", "--cpus-per-task=1",
         "sh", "-c", #"binary=$0 base=$1 nodes=$2; shift 2; exec "$binary" shard --bind "tcp://*:$((base + 1 + SLURM_PROCID / nodes))" "$@""#,
         binary, "\(port)", "\(nodes.count)"] + keys + heartbeat
            + (shardMessageBytes.map { ["--max-message-bytes", "\($0)"] } ?? [])
    }

    /// One task per node, stdin to all: the srun that ships or deletes the node keys.
    public func perNode(_ command: [String], input: Bool) -> [String] {
        ["srun", "--overlap", "--nodes=\(nodes.count)", "--ntasks-per-node=1", "--ntasks=\(nodes.count)"]
            + (input ? ["--input=all"] : []) + command
    }
}
