import Cluster
import Foundation
import Training

/// `recur train --workers W`: this process runs the training loop with a coordinator on a
/// unix socket and starts W `recur work` processes of the same binary; their output is
/// forwarded with a `[worker pid N]` prefix. A worker that exits, or a signal, stops the
/// run after a checkpoint.
enum LocalCluster {
    /// `chunkMilliseconds`: the i-th started worker's `--emulate-chunk-ms` (testing; empty: none).
    static func run(session: TrainingSession, workers: Int, threads: Int, dataPath: String?, tokenCache: String?,
                    heartbeatTimeout: Double, minWorkers: Int? = nil, shards shardCount: Int = 1, balance: Bool = true,
                    chunkMilliseconds: [Double] = [], stop: StopRequest,
                    report: @escaping (TrainingEvent) -> Void, log: @escaping (String) -> Void) throws {
        // ipc (unix socket) beats loopback tcp for the per-step weights and gradients. On Linux
        // the socket is abstract (no file), so even a killed run leaves nothing behind.
        #if os(Linux)
        let socketPath = "@recur-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #else
        let socketPath = NSTemporaryDirectory() + "recur-\(getpid()).sock"
        #endif
        var settings = ZMQServerSettings(bind: "ipc://" + socketPath,
                                         maxMessageBytes: Coordinator.decodeLimits(session.plan).maxMessageBytes)
        settings.ioThreads = min(workers, 4)
        settings.sendTimeout = heartbeatTimeout
        settings.maxConnections = Coordinator.maxConnections(session.plan, workers: workers, elastic: minWorkers != nil)
        let transport = try ZMQServerTransport(settings) { log($0) }
        defer { if !socketPath.hasPrefix("@") { unlink(socketPath) } }
        var options = CoordinatorOptions(workers: workers)
        options.heartbeatTimeout = heartbeatTimeout
        options.joinTimeout = max(60, heartbeatTimeout)
        options.minWorkers = minWorkers
        options.balance = balance
        let token = JoinToken.generate()   // the socket is local, but other users may reach it
        options.joinToken = token
        let environment = [JoinToken.environmentVariable: token, WorkCommand.parentVariable: "\(getpid())"]
        // Sharded: S `recur shard` processes on abstract sockets named here.
        let shardLauncher = LocalLauncher(output: log)
        var shards: ShardConnection?
        if shardCount > 1 {
            let endpoints = (0..<shardCount).map { "ipc://" + socketPath + "-shard\($0)" }
            shardLauncher.onUnexpectedExit = { _, pid, code in
                if code != 0 { stop.request("shard process \(pid) exited with status \(code)") }
            }
            try shardLauncher.start(count: shardCount, executable: LocalLauncher.currentExecutable, environment: environment) {
                ["shard", "--bind", endpoints[$0], "--heartbeat-timeout", "\(heartbeatTimeout)",
                 "--max-message-bytes", "\(ShardServer.maxMessageBytes(for: session.plan))"]
            }
            shards = ShardConnection(endpoints: endpoints, connect: {
                try ZMQClientTransport(connect: $0, sendTimeout: heartbeatTimeout, curve: nil, context: transport.context)
            }, update: session.update)
        }
        defer { shardLauncher.terminateAll() }
        let coordinator = try Coordinator(plan: session.plan, corpus: session.corpus, options: options,
                                          transport: transport, stop: stop, update: session.update, shards: shards, log: log)
        let launcher = LocalLauncher(output: log)
        let toleratesLoss = (minWorkers ?? workers) < workers
        launcher.onUnexpectedExit = { _, pid, code in
            // With losses tolerated the coordinator notices the closed connection and decides.
            if toleratesLoss { log("worker process \(pid) exited with status \(code)") }
            else { stop.request("worker process \(pid) exited with status \(code)") }
        }
        let data = dataPath.map { URL(fileURLWithPath: $0).path }
        try launcher.start(count: workers, executable: LocalLauncher.currentExecutable, environment: environment) { i in
            ["work", "--connect", transport.endpoint, "--threads", "\(threads)",
             "--heartbeat-timeout", "\(heartbeatTimeout)"]
                + (data.map { ["--data", $0] } ?? (session.config.isClassifier ? ["--task", "classify"] : []))
                + (tokenCache.map { ["--token-cache", $0] } ?? [])
                + (i < chunkMilliseconds.count ? ["--emulate-chunk-ms", "\(chunkMilliseconds[i])"] : [])
        }
        do {
            try TrainingLoop(session: session, source: coordinator, store: coordinator.store, stop: stop, report: report).run()
        } catch {
            launcher.terminateAll()
            throw error
        }
        let codes = launcher.waitAll(timeout: 10)
        if !toleratesLoss, let failed = codes.first(where: { $0.value != 0 }) {
            throw ClusterError.workerFailed("worker \(failed.key) exited with status \(failed.value) after the run")
        }
    }
}
