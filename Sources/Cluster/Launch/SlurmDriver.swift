import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Carries out a `SlurmPolicy` inside a Slurm batch step (`recur launch --slurm`, run by
/// cluster/slurm.sbatch): per-job keys made here and shipped to every node through
/// `srun --input=all` (stdin, never a command line) into RECUR_KEY_DIR/recur-slurm.JOBID,
/// the coordinator as a child of this process, shards and workers through `srun`; at the end
/// everything is stopped and the keys are deleted on every node and here.
public final class SlurmDriver {
    enum Event {
        case exited(pid_t, Int32)
        case signal(Int32)
        case grace
    }

    let program: String
    let settings: SlurmSettings
    var policy: SlurmPolicy
    let events = EventQueue<Event>()
    let writer = LineWriter()
    lazy var spawner = Spawner(writer: writer) { [events] pid, status in events.post(.exited(pid, status)) }
    private var signalSources: [DispatchSourceSignal] = []
    var localKeys: String?
    var nodeKeysMade = false
    var coordinator: pid_t?, workers: pid_t?, shards: pid_t?
    /// Key flags of each role, set by `makeKeys`.
    var coordinatorKeys: [String] = [], workerKeys: [String] = [], shardKeys: [String] = []
    var shardFlags: [String] = []
    /// Set once the policy's last action is done.
    var exitStatus: Int32?
    let null = open("/dev/null", O_RDONLY | O_CLOEXEC)

    init(program: String, settings: SlurmSettings) {
        self.program = program
        self.settings = settings
        policy = SlurmPolicy(grace: settings.grace, maxRestarts: settings.maxRestarts, checkpointDirectory: settings.checkpointDirectory)
    }

    func say(_ line: String) { writer.write("\(program): \(line)\n", to: 2) }

    /// `recur launch [--program-name NAME] --slurm [serve flags]`: the job's exit status.
    /// `shardMessageBytes`: as for `LaunchMain.run`.
    public static func main(program: String, binary: String, arguments: [String],
                            shardMessageBytes: ([String]) -> Int? = { _ in nil }) -> Int32 {
        let environment = ProcessInfo.processInfo.environment
        let say = { (text: String) in FileHandle.standardError.write(Data("\(program): \(text)\n".utf8)) }
        let probe = Spawner(writer: LineWriter()) { _, _ in }
        let list = environment["SLURM_JOB_NODELIST"].flatMap { try? probe.capture(["scontrol", "show", "hostnames", $0]).output } ?? ""
        let nodes = list.split(separator: "\n").map(String.init)
        func nodeAddress(_ node: String) -> String? {
            let text = (try? probe.capture(["scontrol", "show", "node", node]).output) ?? ""
            return text.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix("NodeAddr=") }
                .map { String($0.dropFirst("NodeAddr=".count)) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        do {
            var settings = try SlurmSettings(environment: environment, binary: binary, nodes: nodes.isEmpty ? ["localhost"] : nodes,
                                             nodeAddress: nodes.first.flatMap(nodeAddress), serveArguments: arguments)
            if settings.shards > 1 { settings.shardMessageBytes = shardMessageBytes(settings.serveArguments) }
            let driver = SlurmDriver(program: program, settings: settings)
            if settings.shards > 1 { driver.shardFlags = ["--shards", "\(settings.shards)", "--shard-endpoints",
                                                          settings.shardEndpoints(nodeAddresses: settings.nodes.map { nodeAddress($0) ?? $0 })] }
            return driver.run()
        } catch {
            say("\(error)")
            return 64
        }
    }

    func run() -> Int32 {
        umask(0o077)
        signal(SIGPIPE, SIG_IGN)
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [events] in events.post(.signal(number)) }
            source.resume()
            signalSources.append(source)
        }
        do { try makeKeys() } catch {
            say("\(error)")
            return finish(69)
        }
        if let signal = pendingSignal() { return finish(128 + signal) }   // stopped before the job ran
        say(settings.summary)
        let checkpoint = FileManager.default.fileExists(atPath: settings.checkpointDirectory + "/state.json")
        let requeued = settings.restartCount > 0 && !settings.resumeGiven && checkpoint ? settings.restartCount : nil
        perform(policy.handle(.begin(requeued: requeued)))
        while exitStatus == nil {
            guard let event = events.take() else { continue }
            switch event {
            case .exited(let pid, let status) where pid == coordinator:
                coordinator = nil
                perform(policy.handle(.coordinatorExited(status)))
            case .exited(let pid, let status) where pid == workers:
                workers = nil
                perform(policy.handle(.workersExited(status)))
            case .exited: break   // the shards' srun: the coordinator notices lost shards
            case .signal(let number): perform(policy.handle(.signal(number)))
            case .grace: perform(policy.handle(.graceElapsed))
            }
        }
        return exitStatus ?? 70
    }

    /// A stop signal that came while the keys were made (the events stay for the loop).
    private func pendingSignal() -> Int32? {
        var taken: [Event] = []
        while let event = events.take(until: Date()) { taken.append(event) }
        events.putBack(taken)
        for case .signal(let number) in taken { return number }
        return nil
    }

    func perform(_ actions: [SlurmPolicy.Action]) {
        for action in actions {
            switch action {
            case .log(let line): say(line)
            case .startCoordinator(let resume):
                let argv = settings.coordinatorArguments(resume: resume, keys: coordinatorKeys, shardArguments: shardFlags)
                coordinator = start(argv, output: .prefixed("\(settings.nodes[0]) coordinator"))
                if coordinator == nil { perform(policy.handle(.coordinatorExited(127))) }
            case .startWorkers:
                if settings.shards > 1 { shards = start(settings.shardArguments(keys: shardKeys), output: .prefixedOnStdout("shards")) }
                workers = start(settings.workerArguments(keys: workerKeys), output: .inherit)
                if workers == nil { perform(policy.handle(.workersExited(127))) }
            case .terminateCoordinator:
                if let coordinator { spawner.signal([coordinator], SIGTERM) }
            case .startGrace(let seconds):
                DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds)) { [events] in events.post(.grace) }
            case .checkCheckpoint:
                perform(policy.handle(.checkpointChecked(exists: FileManager.default.fileExists(atPath: settings.checkpointDirectory + "/state.json"))))
            case .exit(let status):
                exitStatus = finish(status)
            }
        }
    }

    /// A process with stdin from /dev/null; nil (and a line) when it cannot start.
    private func start(_ argv: [String], output: ChildOutput) -> pid_t? {
        do { return try spawner.spawn(argv, stdin: null, stdout: output, stderr: output) } catch {
            say("\(error)")
            return nil
        }
    }
}
