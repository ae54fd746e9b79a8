import Foundation

/// Where every process of a job runs and how it is reached: built once from the options and
/// the hostfile, no I/O. `hosts` grows when `--join` adds a host (`add`).
///
/// Shapes: hosts[h] (hostfile order, then a coordinator-only host if --coordinator names one
/// not listed); workerHost[r] = h for worker rank r; shardHosts[k] = h for shard k.
public struct LaunchPlan: Equatable {
    public var options: LaunchOptions
    public var hosts: [HostLine]
    public var coordinatorHost: Int
    public var workerHost: [Int]
    public var shardHosts: [Int]
    public var initialWorkers: Int
    public var minWorkers: Int
    public var jobID: String
    /// The local binary (keys, --sync) and its path on the nodes.
    public var binary: String
    public var remoteBinary: String
    /// Remote processes `cd` here first (when it exists on the node).
    public var workingDirectory: String

    public typealias UsageError = LaunchOptions.UsageError

    /// `defaultBinary` is used without --binary; relative paths are taken from `workingDirectory`.
    public init(options: LaunchOptions, hosts listed: [HostLine], hostfileName: String, jobID: String,
                workingDirectory: String, defaultBinary: String) throws {
        self.options = options
        self.jobID = jobID
        self.workingDirectory = workingDirectory
        hosts = listed
        guard !hosts.isEmpty else { throw UsageError("\(hostfileName): no hosts (lines are 'host [workers=N] [threads=K]')") }
        initialWorkers = listed.reduce(0) { $0 + $1.workers }
        guard initialWorkers > 0 else { throw UsageError("\(hostfileName): no workers (every host has workers=0)") }
        let withWorkers = listed.indices.filter { listed[$0].workers > 0 }
        let shardCount = options.shards ?? withWorkers.count
        guard shardCount <= withWorkers.count else {
            throw UsageError("--shards \(shardCount): only \(withWorkers.count) host(s) have workers (one shard per host)")
        }
        shardHosts = shardCount > 1 ? Array(withWorkers.prefix(shardCount)) : []
        minWorkers = options.minWorkers ?? max(1, initialWorkers / 2)
        guard minWorkers <= initialWorkers else {
            throw UsageError("--min-workers \(minWorkers) is more than the hostfile's \(initialWorkers) worker(s)")
        }
        coordinatorHost = 0
        workerHost = listed.indices.flatMap { h in Array(repeating: h, count: listed[h].workers) }
        binary = options.binary ?? defaultBinary
        if !binary.hasPrefix("/") { binary = workingDirectory + "/" + binary }
        remoteBinary = ""
        try placeCoordinator()
        guard options.port + 1 <= 65535 else { throw UsageError("--port \(options.port) leaves no port for the shards (they use port + 1)") }
        let remoteDirectory = options.remoteDirectory ?? (binary as NSString).deletingLastPathComponent
        guard remoteDirectory.hasPrefix("/") else { throw UsageError("--remote-dir must be an absolute path, got '\(remoteDirectory)'") }
        remoteBinary = (remoteDirectory.hasSuffix("/") ? String(remoteDirectory.dropLast()) : remoteDirectory) + "/recur"
    }

    /// The coordinator: a listed host (by target or address), else a host of its own with no workers.
    private mutating func placeCoordinator() throws {
        guard let choice = options.coordinator else { return }
        guard HostLine.isValidTarget(choice) else { throw UsageError("--coordinator: '\(choice)' is not a host name") }
        if let h = hosts.firstIndex(where: { $0.target == choice || $0.address == choice }) {
            coordinatorHost = h
        } else {
            hosts.append(HostLine(target: choice, workers: 0))
            coordinatorHost = hosts.count - 1
        }
    }

    /// A host added with --join; its workers take the next ranks.
    public mutating func add(_ host: HostLine) -> (index: Int, ranks: Range<Int>) {
        hosts.append(host)
        let first = workerHost.count
        workerHost += Array(repeating: hosts.count - 1, count: host.workers)
        return (hosts.count - 1, first..<workerHost.count)
    }

    /// Hosts that run something: the coordinator's and every host with workers.
    public var hostsInUse: [Int] { hosts.indices.filter { $0 == coordinatorHost || hosts[$0].workers > 0 } }

    public var coordinatorTarget: String { hosts[coordinatorHost].target }
    var coordinatorAddress: String { hosts[coordinatorHost].address }
    public var shardPort: Int { options.port + 1 }

    static func isIPLiteral(_ address: String) -> Bool {
        address.contains(":") || address.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression) != nil
    }
    static func endpointHost(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }

    public var bindEndpoint: String {
        let address = options.bindAddress ?? (Self.isIPLiteral(coordinatorAddress) ? coordinatorAddress : "*")
        return "tcp://\(Self.endpointHost(address)):\(options.port)"
    }
    public var connectEndpoint: String { "tcp://\(Self.endpointHost(coordinatorAddress)):\(options.port)" }
    func shardEndpoint(host h: Int) -> String { "tcp://\(Self.endpointHost(hosts[h].address)):\(shardPort)" }
    func shardBind(host h: Int) -> String { Self.isIPLiteral(hosts[h].address) ? shardEndpoint(host: h) : "tcp://*:\(shardPort)" }

    /// Per host, since nodes may share /tmp: `/tmp/JOB.hN`.
    public func remoteJobDirectory(_ h: Int) -> String { "/tmp/\(jobID).h\(h)" }
    func tokenFile(_ h: Int) -> String { remoteJobDirectory(h) + "/join-token" }

    /// The job's one-line summary (the test scripts find the job id in it).
    public var summary: String {
        let shards = shardHosts.isEmpty ? "" : ", \(shardHosts.count) parameter shards (port \(shardPort))"
        let keys = options.insecure ? "INSECURE (no keys)" : "per-job CurveZMQ keys"
        return "job \(jobID): coordinator on \(coordinatorTarget) (\(connectEndpoint)), \(workerHost.count) worker(s) on \(hostsInUse.count) host(s), at least \(minWorkers) worker(s) required\(shards), \(keys)"
    }

    /// ssh and the options every connection uses (no password prompt; a lost host is noticed
    /// within 15 s).
    public var sshBase: [String] {
        ["ssh"] + options.sshOptions + ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                                        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    }
}
