import Foundation

/// The launcher's command line, checked: `recur launch --hostfile FILE [options] [-- serve flags]`
/// or `--join JOB --host LINE`. Parsing does no I/O; every mistake is a `UsageError` (exit 64).
public struct LaunchOptions: Equatable {
    public var hostfile: String?
    public var coordinator: String?
    public var port = 5570
    public var bindAddress: String?
    public var binary: String?
    public var remoteDirectory: String?
    public var sync = false
    /// `--ssh-opts`, split on spaces, every occurrence in order.
    public var sshOptions: [String] = []
    public var heartbeatTimeout: String?
    public var grace: Int?
    public var timeout: Int?
    public var minWorkers: Int?
    public var maxRestarts = 3
    public var shards: Int?
    public var joinJob: String?
    public var joinLine: String?
    public var insecure = false
    public var dryRun = false
    public var help = false
    /// Everything after `--`, for `recur serve`.
    public var serveArguments: [String] = []
    /// What the launcher learns from the serve flags: workers get `--data` too, and a
    /// restarted coordinator resumes from the checkpoint directory.
    public var dataPath: String?
    public var checkpointDirectory = "checkpoints/recur"
    /// Not a flag: the shards' `--max-message-bytes`, the size of the run's setup, which the
    /// caller computes from the serve flags (`recur launch` where it runs); nil: the shards'
    /// default.
    public var shardMessageBytes: Int?

    public init() {}

    /// A usage mistake: printed as `PROGRAM: message`, then a `try '… --help'` line; exit 64.
    public struct UsageError: Error, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// After `--help` nothing else is checked (the help is printed).
    public static func parse(_ arguments: [String]) throws -> LaunchOptions {
        var options = LaunchOptions()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "--" { options.serveArguments = Array(rest); break }
            if argument == "-h" || argument == "--help" { options.help = true; return options }
            if try options.takeFlag(argument) { continue }
            guard let value = rest.popFirst() else {
                if Self.valueOptions.contains(argument) { throw UsageError("\(argument) needs a value") }
                throw UsageError("unknown option '\(argument)' (flags for recur serve go after --)")
            }
            guard try options.takeValue(argument, value) else {
                throw UsageError("unknown option '\(argument)' (flags for recur serve go after --)")
            }
        }
        try options.check()
        try options.readServeArguments()
        return options
    }

    static let valueOptions: Set = ["--hostfile", "--coordinator", "--port", "--bind-address", "--binary", "--remote-dir",
                                    "--ssh-opts", "--heartbeat-timeout", "--grace", "--timeout", "--min-workers",
                                    "--max-restarts", "--shards", "--join", "--host"]

    private mutating func takeFlag(_ argument: String) throws -> Bool {
        switch argument {
        case "--sync": sync = true
        case "--insecure": insecure = true
        case "--dry-run": dryRun = true
        default: return false
        }
        return true
    }

    /// Numbers are checked as they come, with the shell launcher's messages.
    private mutating func takeValue(_ option: String, _ value: String) throws -> Bool {
        func positive(_ what: String) throws -> Int {
            guard let n = wholeNumber(value), n > 0 else { throw UsageError("\(option) must be a positive whole \(what), got '\(value)'") }
            return n
        }
        switch option {
        case "--hostfile": hostfile = value
        case "--coordinator": coordinator = value
        case "--port":
            guard let n = wholeNumber(value), n > 0, n <= 65535 else { throw UsageError("--port must be 1...65535, got '\(value)'") }
            port = n
        case "--bind-address": bindAddress = value
        case "--binary": binary = value
        case "--remote-dir": remoteDirectory = value
        case "--ssh-opts": sshOptions += value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        case "--heartbeat-timeout":
            guard value.range(of: #"^[0-9]+(\.[0-9]+)?$"#, options: .regularExpression) != nil, value.contains(where: { "123456789".contains($0) }) else {
                throw UsageError("--heartbeat-timeout must be a positive number of seconds, got '\(value)'")
            }
            heartbeatTimeout = value
        case "--grace": grace = try positive("number of seconds")
        case "--timeout": timeout = try positive("number of seconds")
        case "--min-workers": minWorkers = try positive("number")
        case "--max-restarts":
            guard let n = wholeNumber(value) else { throw UsageError("--max-restarts must be a whole number, got '\(value)'") }
            maxRestarts = n
        case "--shards": shards = try positive("number")
        case "--join": joinJob = value
        case "--host": joinLine = value
        default: return false
        }
        return true
    }

    /// Which of hostfile / join the command line asks for.
    private func check() throws {
        if joinJob != nil {
            guard joinLine != nil else { throw UsageError("--join JOB needs --host 'host [workers=N] [threads=K]'") }
            guard hostfile == nil else { throw UsageError("--join adds hosts to a running job: give --host, not --hostfile") }
        } else if joinLine != nil {
            throw UsageError("--host adds a host to a running job: give --join JOB too (a new job takes --hostfile)")
        } else if hostfile == nil {
            throw UsageError("--hostfile FILE is required")
        }
    }

    /// The launcher owns some serve flags; it reads --data and the checkpoint directory.
    private mutating func readServeArguments() throws {
        let owned: Set = ["--bind", "--key", "--authorized-keys", "--insecure"]
        let passedOn: Set = ["--heartbeat-timeout", "--min-workers", "--shards", "--shard-endpoints"]
        var i = 0
        while i < serveArguments.count {
            let argument = serveArguments[i], name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            let next = i + 1 < serveArguments.count ? serveArguments[i + 1] : nil
            if name == "--workers" { throw UsageError("do not pass --workers after --: the hostfile sets the worker count") }
            if owned.contains(name) {
                throw UsageError("do not pass \(name) after --: the launcher sets it (see --port, --bind-address, --insecure)")
            }
            if passedOn.contains(name) { throw UsageError("give \(name) before --: the launcher passes it on") }
            switch argument {
            case "--checkpoint", "--checkpoint-dir":
                guard let next else { throw UsageError("\(argument) after -- needs a value") }
                checkpointDirectory = next
            case "--data":
                guard let next else { throw UsageError("--data after -- needs a value") }
                dataPath = next
            default:
                if name == "--checkpoint" || name == "--checkpoint-dir" { checkpointDirectory = String(argument.dropFirst(name.count + 1)) }
                if name == "--data" { dataPath = String(argument.dropFirst("--data=".count)) }
            }
            i += 1
        }
    }

    /// Default: heartbeat timeout (whole seconds) + 11, else 30.
    public var effectiveGrace: Int {
        if let grace { return grace }
        if let heartbeatTimeout, let whole = Int(heartbeatTimeout.split(separator: ".").first ?? "") { return whole + 11 }
        return 30
    }
}
