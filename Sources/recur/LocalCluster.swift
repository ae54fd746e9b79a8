import Cluster
import Foundation
import Training

/// `recur train --workers W`: this process is the coordinator on a loopback port and
/// starts W `recur work` processes of the same binary; their output is forwarded with a
/// `[worker r]` prefix. A worker that exits, or Ctrl-C, stops the run after a checkpoint.
enum LocalCluster {
    static func run(session: TrainingSession, workers: Int, threads: Int, dataPath: String?,
                    heartbeatTimeout: Double, console: Console) throws {
        // ipc (unix socket) beats loopback tcp for the per-step weights and gradients.
        let socketPath = NSTemporaryDirectory() + "recur-\(getpid()).sock"
        var options = CoordinatorOptions(bind: "ipc://" + socketPath, workers: workers)
        options.heartbeatTimeout = heartbeatTimeout
        options.joinTimeout = max(60, heartbeatTimeout)
        let coordinator = try Coordinator(session: session, options: options, report: console.report, log: console.line)
        let launcher = LocalLauncher(output: console.line)
        launcher.onUnexpectedExit = { rank, code in
            coordinator.stop.request("worker \(rank) exited with status \(code)")
        }
        Signals.forward { coordinator.stop.request($0, exitCode: $1) }
        let data = dataPath.map { URL(fileURLWithPath: $0).path }
        try launcher.start(count: workers, executable: LocalLauncher.currentExecutable) { _ in
            ["work", "--connect", coordinator.endpoint, "--threads", "\(threads)",
             "--heartbeat-timeout", "\(heartbeatTimeout)"] + (data.map { ["--data", $0] } ?? [])
        }
        do {
            try coordinator.run()
        } catch {
            launcher.terminateAll()
            if case ClusterError.stopped(let reason) = error, let pending = coordinator.stop.pending,
               pending.exitCode != 1 {
                FileHandle.standardError.write(Data("recur: \(reason)\n".utf8))
                exit(pending.exitCode)
            }
            throw error
        }
        let codes = launcher.waitAll(timeout: 10)
        if let failed = codes.first(where: { $0.value != 0 }) {
            throw ClusterError.workerFailed("worker \(failed.key) exited with status \(failed.value) after the run")
        }
    }
}
