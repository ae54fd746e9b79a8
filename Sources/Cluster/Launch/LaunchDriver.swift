import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Carries out a `LaunchPolicy`: one loop takes events (process ends, signals, join
/// requests, timers) from other threads and does the policy's actions: ssh processes, log
/// lines, replies, timers, the stop. All the I/O of the launcher is here and in its extensions
/// (LaunchDriver+Prepare, LaunchDriver+Stop); all its decisions are in the policy.
public final class LaunchDriver {
    enum Event {
        case exited(pid_t, Int32)
        case signal(Int32)
        case joinLine(String)
        case timer(LaunchTimer)
    }

    /// What a process other than a job process is for, so its end goes to the right place.
    enum Helper {
        case checkpointProbe
        case joinPreparation(reply: String, host: Int, ranks: Range<Int>, log: String)
    }

    let program: String
    var plan: LaunchPlan
    var policy: LaunchPolicy
    let events = EventQueue<Event>()
    let writer = LineWriter()
    lazy var spawner = Spawner(writer: writer) { [events] pid, status in events.post(.exited(pid, status)) }
    /// `$TMPDIR/JOB.launch`, mode 0700: keys before shipping, the joiners' key, the join fifo.
    let localDirectory: String
    var keepalive: (read: Int32, write: Int32)?
    /// ssh pid → policy process id
    var jobProcesses: [pid_t: Int] = [:]
    var helpers: [pid_t: Helper] = [:]
    /// Hosts whose remote job directory exists (deleted at the end).
    var shippedHosts: [Int] = []
    var joinChannel: JoinChannel?
    private var signalSources: [DispatchSourceSignal] = []
    /// The first stop signal that came while no policy was listening (preparation, cleanup).
    var pendingSignal: Int32?
    var cleaned = false
    /// Set by the policy's last action.
    var exitStatus: Int32?

    public init(program: String, plan: LaunchPlan, temporaryDirectory: String) {
        self.program = program
        self.plan = plan
        policy = LaunchPolicy(.init(plan: plan))
        localDirectory = temporaryDirectory + "/" + plan.jobID + ".launch"
    }

    func say(_ line: String) { writer.write("\(program): \(line)\n", to: 2) }

    /// Prepares the hosts, runs the job; its exit status (the caller exits with it).
    public func run() -> Int32 {
        umask(0o077)
        catchSignals()
        guard mkdir(localDirectory, 0o700) == 0 else {
            say("cannot create \(localDirectory): \(String(cString: strerror(errno)))")
            return 69
        }
        if let status = prepare() {
            cleanup()
            return status
        }
        do {
            keepalive = try Spawner.pipe()
            joinChannel = try JoinChannel(directory: localDirectory) { [events] line in events.post(.joinLine(line)) }
        } catch {
            say("\(error)")
            cleanup()
            return 70
        }
        perform(policy.handle(.begin))
        while exitStatus == nil {
            if let event = events.take(), let translated = translate(event) { perform(policy.handle(translated)) }
        }
        return exitStatus ?? 70
    }

    /// SIGHUP, SIGINT and SIGTERM become events; ignored as signals (and so in the children,
    /// which get TERM and HUP back to default; see Spawner).
    private func catchSignals() {
        signal(SIGPIPE, SIG_IGN)
        for number in [SIGHUP, SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [events] in events.post(.signal(number)) }
            source.resume()
            signalSources.append(source)
        }
    }

    /// The policy's view of a driver event; nil for the end of a process the driver no
    /// longer follows.
    func translate(_ event: Event) -> LaunchEvent? {
        switch event {
        case .exited(let pid, let status):
            if let id = jobProcesses.removeValue(forKey: pid) { return .exited(process: id, status: status) }
            guard let helper = helpers.removeValue(forKey: pid) else { return nil }
            return helperEnded(helper, status)
        case .signal(let number): return .signal(number)
        case .timer(let timer): return .timerElapsed(timer)
        case .joinLine(let line):
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            return .joinRequested(reply: parts[0], line: parts.count > 1 ? parts[1] : "")
        }
    }

    private func helperEnded(_ helper: Helper, _ status: Int32) -> LaunchEvent {
        switch helper {
        case .checkpointProbe:
            return .checkpointChecked(exists: status == 0)
        case .joinPreparation(let reply, let host, let ranks, let log):
            if status != 255 { shippedHosts.append(host) }
            guard status != 0 else { return .joinPrepared(reply: reply, failure: nil) }
            plan.workerHost.removeLast(ranks.count)
            return .joinPrepared(reply: reply, failure: Self.oneLine(contentsOf: log))
        }
    }

    /// A log file's lines joined by spaces (as `tr '\n' ' '`).
    static func oneLine(contentsOf path: String) -> String {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").replacingOccurrences(of: "\n", with: " ")
    }

    func perform(_ actions: [LaunchAction]) {
        for action in actions {
            switch action {
            case .start(let process): start(process)
            case .log(let line): say(line)
            case .checkCheckpoint: probeCheckpoint()
            case .prepareJoin(let reply, let host, let ranks): prepareJoin(reply, host, ranks)
            case .reply(let to, let text): joinChannel?.answer(to, text)
            case .startTimer(let timer, let seconds):
                DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds)) { [events] in events.post(.timer(timer)) }
            case .stopAll:
                cleanup()
                perform(policy.handle(.stopped))
            case .exit(let status):
                exitStatus = status
            }
        }
    }

    /// One job process: ssh to its host running the wrapped command, stdin the keepalive pipe.
    private func start(_ process: LaunchProcess) {
        let command: String
        switch process.role {
        case .coordinator: command = plan.coordinatorCommand(resume: process.resume)
        case .shard(let k): command = plan.shardCommand(k)
        case .worker(let r): command = plan.workerCommand(r)
        }
        let argv = plan.sshBase + ["--", plan.hosts[process.host].target, plan.wrapped(command, host: process.host)]
        do {
            guard let keepalive else { throw Spawner.SpawnError(description: "no keepalive pipe") }
            let pid = try spawner.spawn(argv, stdin: keepalive.read, stdout: .prefixed(process.label), stderr: .prefixed(process.label))
            jobProcesses[pid] = process.id
        } catch {
            say("[\(process.label)] \(error)")
            perform(policy.handle(.exited(process: process.id, status: 127)))
        }
    }

    private func probeCheckpoint() {
        let argv = plan.sshBase + ["--", plan.coordinatorTarget, plan.checkpointProbe]
        do {
            let pid = try runHelper(argv, stdin: "/dev/null", output: .null)
            helpers[pid] = .checkpointProbe
            spawner.limit(pid, seconds: 30)
        } catch {
            perform(policy.handle(.checkpointChecked(exists: false)))
        }
    }

    /// Ships the joiners' key (or the token) to a new host, one copy per worker rank.
    private func prepareJoin(_ reply: String, _ host: HostLine, _ ranks: Range<Int>) {
        let (h, _) = plan.add(host)
        let log = "\(localDirectory)/join.\(h).log"
        do {
            let input = try joinShipment(host: h, ranks: ranks)
            defer { if input != tokenPath { unlink(input) } }
            let pid = try runHelper(plan.sshBase + ["--", host.target, plan.prepareCommand(h)], stdin: input, output: .file(log))
            helpers[pid] = .joinPreparation(reply: reply, host: h, ranks: ranks, log: log)
        } catch {
            plan.workerHost.removeLast(ranks.count)
            perform(policy.handle(.joinPrepared(reply: reply, failure: "\(error)")))
        }
    }

    /// Spawns a helper with stdin from a file, stdout to `output` and stderr with it.
    func runHelper(_ argv: [String], stdin path: String, output: ChildOutput) throws -> pid_t {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Spawner.SpawnError(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try spawner.spawn(argv, stdin: fd, stdout: output, stderr: .stdout)
    }
}
