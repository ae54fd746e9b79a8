import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The keys of a Slurm job and the end of it.
///
/// Local (TMPDIR/recur-slurm-keys.XXXXXX, 0700): coordinator.{key,pub}, authorized-keys (the
/// workers' one key), ship/{worker.key,worker.pub,coordinator.pub,coordinator.key,
/// shard-authorized-keys}. Every node receives ship/'s files (but worker.pub) as a tar on
/// stdin into `nodeKeys` (0700). Without keys (RECUR_INSECURE=1), a join token in the
/// environment of serve and of every srun task.
extension SlurmDriver {
    struct KeyFailure: Error, CustomStringConvertible { var description: String }

    func makeKeys() throws {
        if settings.insecure {
            setenv("RECUR_JOIN_TOKEN", JoinSecret.make(), 1)
            coordinatorKeys = ["--insecure"]
            shardKeys = ["--insecure"]
            say("RECUR_INSECURE=1: workers join without keys, with a per-job token in their environment")
            return
        }
        let temporary = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(temporary)/recur-slurm-keys.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw KeyFailure(description: "cannot make a key directory in \(temporary)") }
        let keys = String(cString: made), ship = keys + "/ship"
        localKeys = keys
        try keygen(keys, "coordinator")
        try keygen(ship, "worker")
        let files = FileManager.default
        try files.copyItem(atPath: keys + "/coordinator.pub", toPath: ship + "/coordinator.pub")
        let allowed = "# workers of Slurm job \(settings.jobID)\npublic-key = \(try publicKey(ship + "/worker.pub"))\n"
        try write(allowed, keys + "/authorized-keys")
        try files.copyItem(atPath: keys + "/coordinator.key", toPath: ship + "/coordinator.key")
        try write(allowed + "# the coordinator\npublic-key = \(try publicKey(keys + "/coordinator.pub"))\n", ship + "/shard-authorized-keys")
        let tar = keys + "/ship.tar"
        let packed = try spawner.capture(["tar", "-c", "-f", tar, "-C", ship, "worker.key", "coordinator.pub", "coordinator.key", "shard-authorized-keys"])
        nodeKeysMade = true
        let unpack = ["sh", "-c", #"umask 077 && rm -rf "$0" && mkdir -m 700 "$0" && tar -x -f - -C "$0""#, settings.nodeKeys]
        guard packed.status == 0, runToEnd(settings.perNode(unpack, input: true), stdin: tar) == 0 else {
            throw KeyFailure(description: "could not ship the worker key to the nodes")
        }
        unlink(tar)
        coordinatorKeys = ["--key", keys + "/coordinator.key", "--authorized-keys", keys + "/authorized-keys"]
        workerKeys = ["--key", settings.nodeKeys + "/worker.key", "--server-key", settings.nodeKeys + "/coordinator.pub"]
        shardKeys = ["--key", settings.nodeKeys + "/coordinator.key", "--authorized-keys", settings.nodeKeys + "/shard-authorized-keys"]
    }

    private func keygen(_ directory: String, _ name: String) throws {
        let made = try? spawner.capture([settings.binary, "keygen", "--out", directory, "--name", name])
        guard made?.status == 0 else { throw KeyFailure(description: "recur keygen failed") }
    }

    private func publicKey(_ path: String) throws -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("public-key") {
            return line.drop(while: { $0 != "=" }).dropFirst().trimmingCharacters(in: .whitespaces)
        }
        throw KeyFailure(description: "recur keygen wrote no public key to \(path)")
    }

    private func write(_ text: String, _ path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw KeyFailure(description: "cannot write \(path)")
        }
    }

    /// Runs `argv` with stdin from `path` to its end (its status; 69 when it cannot start).
    private func runToEnd(_ argv: [String], stdin path: String) -> Int32 {
        let input = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(input) }
        guard input >= 0, let pid = try? spawner.spawn(argv, stdin: input, stdout: .inherit, stderr: .inherit, watch: false) else { return 69 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status == 0 ? 0 : 1
    }

    /// TERM to what still runs (workers, coordinator, shards), KILL after 10 s each; the keys
    /// deleted on every node (`srun rm -rf`, 30 s at most) and here; returns `status`.
    func finish(_ status: Int32) -> Int32 {
        let running = [workers, coordinator, shards].compactMap { $0 }
        spawner.signal(running, SIGTERM)
        for pid in running {
            let deadline = Date() + 10
            while spawner.isRunning(pid), Date() < deadline { usleep(100_000) }
            spawner.signal([pid], SIGKILL)
        }
        if nodeKeysMade {
            let removed = try? spawner.spawn(settings.perNode(["rm", "-rf", settings.nodeKeys], input: false), stdin: null, stdout: .null, stderr: .null)
            if let removed {
                spawner.limit(removed, seconds: 30)
                while spawner.isRunning(removed) { usleep(100_000) }
            }
            if removed == nil || removedStatus(removed!) != 0 { say("could not delete \(settings.nodeKeys) on every node") }
        }
        if let localKeys { try? FileManager.default.removeItem(atPath: localKeys) }
        spawner.drain(seconds: 5)
        return status
    }

    /// The status of a finished helper, from the events (other events are dropped: the job is over).
    private func removedStatus(_ pid: pid_t) -> Int32 {
        while let event = events.take(until: Date() + 1) {
            if case .exited(let ended, let status) = event, ended == pid { return status }
        }
        return 1
    }
}
