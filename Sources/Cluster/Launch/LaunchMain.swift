import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `recur launch [--program-name NAME] …`: from the command line to a running job, a join
/// request, the help or a dry run; the exit status. Messages start with the program name
/// (`cluster/launch` when the script runs it); mistakes are 64.
public enum LaunchMain {
    /// `shardMessageBytes`: the shards' message bound from the serve flags (the size of the
    /// run's setup, `ShardServer.maxMessageBytes`), nil when the model cannot be known here.
    public static func run(_ arguments: [String], program: String, defaultBinary: String,
                           shardMessageBytes: ([String]) -> Int? = { _ in nil }) -> Int32 {
        let say = { (text: String) in FileHandle.standardError.write(Data("\(program): \(text)\n".utf8)) }
        func usage(_ error: Error) -> Int32 {
            say("\(error)")
            say("try '\(program) --help'")
            return 64
        }
        let temporaryDirectory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let options: LaunchOptions
        do { options = try LaunchOptions.parse(arguments) } catch { return usage(error) }
        if options.help {
            print(LaunchHelp.text(program: program), terminator: "")
            return 0
        }
        if let job = options.joinJob, let line = options.joinLine {
            do { try checkJoin(job: job, line: line) } catch { return usage(error) }
            return JoinClient.run(program: program, job: job, line: line, temporaryDirectory: temporaryDirectory)
        }
        var plan: LaunchPlan
        do { plan = try makePlan(options, defaultBinary: defaultBinary) } catch { return usage(error) }
        say(plan.summary)
        if !plan.shardHosts.isEmpty {
            plan.options.shardMessageBytes = shardMessageBytes(options.serveArguments)
            if plan.options.shardMessageBytes == nil {
                say("the model's size is not known here (its data or checkpoint is not readable on this host): the shards take their default message bound of 16 MiB, and the coordinator names a shard whose setup is larger")
            }
        }
        if options.dryRun {
            print(DryRun.text(plan), terminator: "")
            return 0
        }
        return LaunchDriver(program: program, plan: plan, temporaryDirectory: temporaryDirectory).run()
    }

    static func checkJoin(job: String, line: String) throws {
        guard job.range(of: #"^recur-job\.[A-Za-z0-9._-]+$"#, options: .regularExpression) != nil else {
            throw LaunchOptions.UsageError("--join: '\(job)' is not a job id (recur-job.HOST.PID.HEX, printed at its start)")
        }
        guard let host = try HostLine.parse(line, place: "--host", line: 0, existing: []) else {
            throw LaunchOptions.UsageError("--host needs a host name")
        }
        guard host.workers > 0 else { throw LaunchOptions.UsageError("--host: workers=0 adds nothing") }
    }

    static func makePlan(_ options: LaunchOptions, defaultBinary: String) throws -> LaunchPlan {
        let name = options.hostfile ?? ""
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: name, isDirectory: &isDirectory), !isDirectory.boolValue,
              let data = FileManager.default.contents(atPath: name) else {
            throw LaunchOptions.UsageError("cannot read hostfile '\(name)'")
        }
        let hosts = try HostLine.parseFile(String(decoding: data, as: UTF8.self), name: name)
        return try LaunchPlan(options: options, hosts: hosts, hostfileName: name, jobID: newJobID(),
                              workingDirectory: FileManager.default.currentDirectoryPath, defaultBinary: defaultBinary)
    }

    /// `recur-job.HOST.PID.HEX`: the short host name, this process, 32 random bits.
    static func newJobID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? String(cString: name) : "local"
        let short = host.split(separator: ".").first.map(String.init) ?? "local"
        return "recur-job.\(short.isEmpty ? "local" : short).\(getpid()).\(String(format: "%08x", UInt32.random(in: .min ... .max)))"
    }
}

/// `--dry-run`: every command the job would run, none run.
enum DryRun {
    static func text(_ plan: LaunchPlan) -> String {
        let ssh = shellQuote(words: plan.sshBase), binary = shellQuote(plan.binary), keys = "$KEYS"
        var lines = ["# job \(plan.jobID) (dry run: nothing is executed)"]
        if !plan.options.insecure {
            lines.append("KEYS=$(mktemp -d)")
            lines.append("\(binary) keygen --out \"\(keys)/coordinator\" --name coordinator")
            for r in plan.workerHost.indices {
                lines.append("\(binary) keygen --out \"\(keys)/worker-\(r)\" --name worker && cp \"\(keys)/coordinator/coordinator.pub\" \"\(keys)/worker-\(r)/\"")
            }
            lines.append("# \"\(keys)/coordinator/authorized-keys\" = the public keys of \"\(keys)\"/worker-*/worker.pub")
        }
        for h in plan.hostsInUse {
            let target = shellQuote(plan.hosts[h].target)
            if plan.options.sync { lines.append("\(ssh) -- \(target) \(shellQuote(plan.syncCommand(h))) < \(binary)") }
            if plan.options.insecure {
                lines.append("echo JOIN-TOKEN | \(ssh) -- \(target) \(shellQuote(plan.prepareCommand(h)))")
            } else {
                let files = plan.hostFiles(h).joined(separator: " ")
                lines.append("tar -c -f - -C \"\(keys)\" \(files) | \(ssh) -- \(target) \(shellQuote(plan.prepareCommand(h)))")
            }
        }
        lines.append("# each process below runs as: \(ssh) -- HOST '<sh wrapper: cd \(shellQuote(plan.workingDirectory)); COMMAND; stop it when stdin closes>'")
        for (k, h) in plan.shardHosts.enumerated() { lines.append("[\(plan.hosts[h].target) shard \(k)] \(plan.shardCommand(k))") }
        lines.append("[\(plan.coordinatorTarget) coordinator] \(plan.coordinatorCommand(resume: false))")
        for (r, h) in plan.workerHost.enumerated() { lines.append("[\(plan.hosts[h].target) worker \(r)] \(plan.workerCommand(r))") }
        for h in plan.hostsInUse {
            lines.append("\(ssh) -- \(shellQuote(plan.hosts[h].target)) \(shellQuote(plan.removeCommand(h)))")
        }
        if !plan.options.insecure { lines.append("rm -rf \"\(keys)\"") }
        return lines.joined(separator: "\n") + "\n"
    }
}
