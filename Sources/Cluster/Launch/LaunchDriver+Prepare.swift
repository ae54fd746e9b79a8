import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Before the job starts: per-job keys (`recur keygen` of the local binary) or a join token,
/// `--sync`, and on every host in parallel a check of the binary and the host's secrets
/// shipped through ssh's standard input. Any failure ends the launcher with 69 (nothing started).
///
/// Local files (all under the 0700 directory): keys/coordinator/{coordinator.key,.pub,
/// authorized-keys}, keys/worker-R/{worker.key,.pub,coordinator.pub}, keys/shard/{coordinator.key,
/// authorized-keys}, joiner/{worker.key,.pub,coordinator.pub}; keys/ is deleted once shipped.
extension LaunchDriver {
    struct PreparationFailure: Error, CustomStringConvertible { var description: String }

    var keysDirectory: String { localDirectory + "/keys" }
    var joinerDirectory: String { localDirectory + "/joiner" }
    var tokenPath: String { localDirectory + "/join-token" }

    /// nil when every host is ready; else the launcher's exit status (69, or 128+N after signal N).
    func prepare() -> Int32? {
        do {
            if plan.options.insecure {
                try write(JoinSecret.make(), to: tokenPath)
            } else {
                try needLocalBinary()
                try makeKeys()
            }
            if plan.options.sync { try needLocalBinary() }
        } catch {
            say("\(error)")
            return 69
        }
        if plan.options.sync, let status = runOnHosts("sync") { return status }
        if let status = runOnHosts("prepare") { return status }
        try? FileManager.default.removeItem(atPath: keysDirectory)
        return nil
    }

    private func needLocalBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: plan.binary) else {
            throw PreparationFailure(description: "no executable recur at \(plan.binary) (run scripts/setup or pass --binary)")
        }
    }

    func write(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw PreparationFailure(description: "cannot write \(path)")
        }
    }

    /// Coordinator, worker and joiner key pairs, and the allow-lists of the coordinator and shards.
    private func makeKeys() throws {
        try makeDirectory(keysDirectory)
        let coordinator = keysDirectory + "/coordinator"
        try keygen(coordinator, name: "coordinator", failure: "recur keygen failed for the coordinator")
        var allowed = "# workers of job \(plan.jobID)\n"
        for rank in plan.workerHost.indices {
            let directory = "\(keysDirectory)/worker-\(rank)"
            try keygen(directory, name: "worker", failure: "recur keygen failed for worker \(rank)")
            try FileManager.default.copyItem(atPath: coordinator + "/coordinator.pub", toPath: directory + "/coordinator.pub")
            allowed += "# worker \(rank) on \(plan.hosts[plan.workerHost[rank]].target)\npublic-key = \(try publicKey(directory + "/worker.pub"))\n"
        }
        try keygen(joinerDirectory, name: "worker", failure: "recur keygen failed for joining workers")
        try FileManager.default.copyItem(atPath: coordinator + "/coordinator.pub", toPath: joinerDirectory + "/coordinator.pub")
        allowed += "# workers of hosts added with --join\npublic-key = \(try publicKey(joinerDirectory + "/worker.pub"))\n"
        try write(allowed, to: coordinator + "/authorized-keys")
        if !plan.shardHosts.isEmpty {
            let shard = keysDirectory + "/shard"
            try makeDirectory(shard)
            try FileManager.default.copyItem(atPath: coordinator + "/coordinator.key", toPath: shard + "/coordinator.key")
            let own = try publicKey(coordinator + "/coordinator.pub")
            try write(allowed + "# the coordinator, a client of every shard\npublic-key = \(own)\n", to: shard + "/authorized-keys")
        }
    }

    private func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o700) == 0 else { throw PreparationFailure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
    }

    /// `recur keygen --out DIR --name NAME` of the local binary, in a new 0700 directory.
    private func keygen(_ directory: String, name: String, failure: String) throws {
        try makeDirectory(directory)
        let argv = [plan.binary, "keygen", "--out", directory, "--name", name]
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        guard let pid = try? spawner.spawn(argv, stdin: null, stdout: .null, stderr: .inherit),
              waitFor(pid) == 0 else { throw PreparationFailure(description: failure) }
    }

    /// The Z85 public key of a key file (40 characters) or a failure naming the file.
    private func publicKey(_ path: String) throws -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("public-key") {
            let key = line.drop(while: { $0 != "=" }).dropFirst().trimmingCharacters(in: .whitespaces)
            if key.count == 40 { return key }
        }
        throw PreparationFailure(description: "recur keygen wrote no public key to \(path)")
    }

    /// Waits for one short helper (keygen, tar, a preparing ssh). Other events go back to the
    /// queue, in order, for the loop; a stop signal is also noted in `pendingSignal`, which
    /// the preparation looks at.
    func waitFor(_ pid: pid_t) -> Int32 {
        var deferred: [Event] = []
        defer { events.putBack(deferred) }
        while true {
            switch events.take() {
            case .exited(let ended, let status)? where ended == pid: return status
            case .signal(let number)?:
                if pendingSignal == nil { pendingSignal = number }
                deferred.append(.signal(number))
            case let other?: deferred.append(other)
            case nil: break
            }
        }
    }

    /// Runs `what` (sync or prepare) on every host in use in parallel; nil when all succeeded,
    /// else 69 after naming each host that failed, or 128+N after signal N.
    private func runOnHosts(_ what: String) -> Int32? {
        var runners: [(pid: pid_t, host: Int, log: String)] = []
        var failed: [(host: Int, log: String, status: Int32)] = []
        for h in plan.hostsInUse {
            let log = "\(localDirectory)/\(what).\(h).log"
            do {
                let (command, input) = try shipment(what, host: h)
                if what == "prepare" { shippedHosts.append(h) }
                let pid = try runHelper(plan.sshBase + ["--", plan.hosts[h].target, command], stdin: input, output: .file(log))
                runners.append((pid, h, log))
            } catch {
                try? write("\(error)\n", to: log)
                failed.append((h, log, 127))
            }
        }
        for runner in runners {
            let status = waitFor(runner.pid)
            if let signal = pendingSignal {
                spawner.signal(runners.map(\.pid), SIGTERM)
                say("interrupted during \(what): stopping")
                return 128 + signal
            }
            if status != 0 { failed.append((runner.host, runner.log, status)) }
        }
        for path in (try? FileManager.default.contentsOfDirectory(atPath: localDirectory)) ?? [] where path.hasSuffix(".tar") {
            unlink(localDirectory + "/" + path)
        }
        guard !failed.isEmpty else { return nil }
        for failure in failed.sorted(by: { $0.host < $1.host }) {
            say("\(what) failed on \(plan.hosts[failure.host].target): \(Self.oneLine(contentsOf: failure.log))")
        }
        // Hosts ssh never reached hold no job directory: nothing to delete there.
        let unreached = Set(failed.filter { $0.status == 255 }.map(\.host))
        shippedHosts.removeAll { unreached.contains($0) }
        return 69
    }

    /// The remote command of `what` on host h and the local file its stdin reads.
    private func shipment(_ what: String, host h: Int) throws -> (command: String, input: String) {
        if what == "sync" { return (plan.syncCommand(h), plan.binary) }
        if plan.options.insecure { return (plan.prepareCommand(h), tokenPath) }
        let tar = "\(localDirectory)/keys.\(h).tar"
        try makeTar(tar, from: keysDirectory, files: plan.hostFiles(h))
        return (plan.prepareCommand(h), tar)
    }

    /// `tar -c -f TAR -C DIRECTORY FILES…`
    func makeTar(_ tar: String, from directory: String, files: [String]) throws {
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        let pid = try spawner.spawn(["tar", "-c", "-f", tar, "-C", directory] + files, stdin: null, stdout: .null, stderr: .inherit)
        guard waitFor(pid) == 0 else { throw PreparationFailure(description: "tar of the key files failed") }
    }

    /// What a host added with --join receives: a tar of worker-R/{worker.key,coordinator.pub}
    /// (the joiners' key pair) for each of its ranks, or the join token.
    func joinShipment(host h: Int, ranks: Range<Int>) throws -> String {
        if plan.options.insecure { return tokenPath }
        let ship = "\(localDirectory)/ship.\(h)"
        defer { try? FileManager.default.removeItem(atPath: ship) }
        try makeDirectory(ship)
        for rank in ranks {
            let directory = "\(ship)/worker-\(rank)"
            try makeDirectory(directory)
            for file in ["worker.key", "coordinator.pub"] {
                try FileManager.default.copyItem(atPath: "\(joinerDirectory)/\(file)", toPath: "\(directory)/\(file)")
            }
        }
        try makeTar(ship + ".tar", from: ship, files: ranks.map { "worker-\($0)" })
        return ship + ".tar"
    }
}
