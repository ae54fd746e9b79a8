import Foundation

/// POSIX-sh single quoting, safe for any remote login shell: words of plain characters stay
/// as they are, others go in '…' with each ' as '\''.
public func shellQuote(_ word: String) -> String {
    if word.range(of: #"^[A-Za-z0-9_./:=@%+,-]+$"#, options: .regularExpression) != nil { return word }
    return "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
}

public func shellQuote(words: [String]) -> String { words.map(shellQuote).joined(separator: " ") }

/// The command lines a job runs on its nodes (each one string, given to ssh).
///
/// Key files on a node: JOBDIR/coordinator/{coordinator.key,authorized-keys},
/// JOBDIR/shard/{coordinator.key,authorized-keys} and JOBDIR/worker-R/{worker.key,coordinator.pub},
/// JOBDIR = remoteJobDirectory(h). Without keys (--insecure) JOBDIR/join-token instead.
extension LaunchPlan {
    func keyDirectory(_ h: Int, _ name: String) -> String { remoteJobDirectory(h) + "/" + name }

    var heartbeatWords: [String] { options.heartbeatTimeout.map { ["--heartbeat-timeout", $0] } ?? [] }

    /// A restarted coordinator resumes from its checkpoint: `--resume` and no --init-from.
    public func coordinatorCommand(resume: Bool) -> String {
        let h = coordinatorHost, directory = keyDirectory(h, "coordinator")
        var words = [remoteBinary, "serve", "--bind", bindEndpoint, "--workers", "\(initialWorkers)", "--min-workers", "\(minWorkers)"]
        if !shardHosts.isEmpty {
            words += ["--shards", "\(shardHosts.count)", "--shard-endpoints", shardHosts.map { shardEndpoint(host: $0) }.joined(separator: ",")]
        }
        words += options.insecure ? ["--insecure", "--token-file", tokenFile(h)]
            : ["--key", directory + "/coordinator.key", "--authorized-keys", directory + "/authorized-keys"]
        words += heartbeatWords
        words += resume ? Self.resumed(options.serveArguments) : options.serveArguments
        return shellQuote(words: words)
    }

    /// The serve flags of a restart: --resume once, and without --init-from.
    static func resumed(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--init-from" { i += 2; continue }
            if argument != "--resume" && !argument.hasPrefix("--init-from=") { out.append(argument) }
            i += 1
        }
        return out + ["--resume"]
    }

    /// Shard k serves with the coordinator's key pair and admits the workers and the coordinator.
    public func shardCommand(_ k: Int) -> String {
        let h = shardHosts[k], directory = keyDirectory(h, "shard")
        var words = [remoteBinary, "shard", "--bind", shardBind(host: h)]
        // libzmq fixes the message bound at bind, before the setup names the model.
        if let bytes = options.shardMessageBytes { words += ["--max-message-bytes", "\(bytes)"] }
        words += options.insecure ? ["--insecure", "--token-file", tokenFile(h)]
            : ["--key", directory + "/coordinator.key", "--authorized-keys", directory + "/authorized-keys"]
        return shellQuote(words: words + heartbeatWords)
    }

    public func workerCommand(_ rank: Int) -> String {
        let h = workerHost[rank], directory = keyDirectory(h, "worker-\(rank)")
        var words = [remoteBinary, "work", "--connect", connectEndpoint]
        if let threads = hosts[h].threads { words += ["--threads", "\(threads)"] }
        if let data = options.dataPath { words += ["--data", data] }
        words += options.insecure ? ["--token-file", tokenFile(h)]
            : ["--key", directory + "/worker.key", "--server-key", directory + "/coordinator.pub"]
        return shellQuote(words: words + heartbeatWords)
    }

    /// The remote wrapper (POSIX sh): runs the command in the background with stdin from
    /// /dev/null, and a watcher that reads the ssh channel until EOF (the launcher stopping the
    /// job, or gone), then deletes the host's job directory (keys and token were read at start)
    /// and sends TERM and, after 10 s, KILL. Exits with the command's status (128+N for signal N).
    public func wrapped(_ command: String, host h: Int) -> String {
        """
        cd \(shellQuote(workingDirectory)) 2>/dev/null || cd
        exec 3<&0
        \(command) </dev/null 3<&- &
        child=$!
        ( while read -r _; do :; done
          rm -rf \(shellQuote(remoteJobDirectory(h)))
          kill -TERM $child 2>/dev/null
          i=0
          while [ $i -lt 20 ] && kill -0 $child 2>/dev/null; do sleep 0.5; i=$((i + 1)); done
          kill -KILL $child 2>/dev/null ) <&3 >/dev/null 2>&1 &
        watcher=$!
        wait $child
        status=$?
        kill $watcher 2>/dev/null
        exit $status
        """
    }

    /// Prepares one host: checks the binary, receives a tar of its key files (or, with
    /// --insecure, the join token) on stdin into a fresh 0700 directory.
    public func prepareCommand(_ h: Int) -> String {
        let directory = shellQuote(remoteJobDirectory(h))
        let check = "test -x \(shellQuote(remoteBinary)) || { echo \"no executable recur at \(remoteBinary) (build it there or use --sync)\" >&2; exit 3; }"
        if options.insecure { return "\(check) && umask 077 && mkdir -m 700 \(directory) && cat > \(shellQuote(tokenFile(h)))" }
        return "\(check) && umask 077 && mkdir -m 700 \(directory) && tar -x -f - -C \(directory)"
    }

    /// A temporary name per host, then a rename: nodes that share a file system write one path.
    public func syncCommand(_ h: Int) -> String {
        let temporary = shellQuote("\(remoteBinary).\(jobID).h\(h).partial")
        let directory = shellQuote((remoteBinary as NSString).deletingLastPathComponent)
        return "mkdir -p \(directory) && cat > \(temporary) && chmod 755 \(temporary) && mv -f \(temporary) \(shellQuote(remoteBinary))"
    }

    /// The key files host h receives (paths under the local key directory).
    public func hostFiles(_ h: Int) -> [String] {
        var files: [String] = []
        if h == coordinatorHost { files += ["coordinator/coordinator.key", "coordinator/authorized-keys"] }
        if shardHosts.contains(h) { files += ["shard/coordinator.key", "shard/authorized-keys"] }
        for rank in workerHost.indices where workerHost[rank] == h {
            files += ["worker-\(rank)/worker.key", "worker-\(rank)/coordinator.pub"]
        }
        return files
    }

    /// Whether the coordinator's checkpoint directory holds a checkpoint, on its host.
    public var checkpointProbe: String {
        "cd \(shellQuote(workingDirectory)) 2>/dev/null || cd; test -f \(shellQuote(options.checkpointDirectory))/state.json"
    }

    public func removeCommand(_ h: Int) -> String { "rm -rf \(shellQuote(remoteJobDirectory(h)))" }
}
