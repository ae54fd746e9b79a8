import Cluster
import Foundation
import Training

/// `recur train --workers W`: this process is the coordinator on a loopback port and
/// starts W `recur work` processes of the same binary; their output is forwarded with a
/// `[worker pid N]` prefix. A worker that exits, or Ctrl-C, stops the run after a checkpoint.
enum LocalCluster {
    static func run(session: TrainingSession, workers: Int, threads: Int, dataPath: String?,
                    heartbeatTimeout: Double, console: Console) throws {
        try run(session: session, workers: workers, threads: threads, dataPath: dataPath,
                heartbeatTimeout: heartbeatTimeout, report: console.report, log: console.line)
    }

    static func run(session: TrainingSession, workers: Int, threads: Int, dataPath: String?,
                    heartbeatTimeout: Double, report: @escaping (TrainingEvent) -> Void,
                    log: @escaping (String) -> Void) throws {
        // ipc (unix socket) beats loopback tcp for the per-step weights and gradients.
        let socketPath = NSTemporaryDirectory() + "recur-\(getpid()).sock"
        var options = CoordinatorOptions(bind: "ipc://" + socketPath, workers: workers)
        options.heartbeatTimeout = heartbeatTimeout
        options.joinTimeout = max(60, heartbeatTimeout)
        let coordinator = try Coordinator(session: session, options: options, report: report, log: log)
        defer { unlink(socketPath) }
        let launcher = LocalLauncher(output: log)
        launcher.onUnexpectedExit = { [weak coordinator] _, pid, code in
            coordinator?.stop.request("worker process \(pid) exited with status \(code)")
        }
        let stop = coordinator.stop
        Signals.forward { stop.request($0, exitCode: $1) }
        let data = dataPath.map { URL(fileURLWithPath: $0).path }
        try launcher.start(count: workers, executable: LocalLauncher.currentExecutable) { _ in
            ["work", "--connect", coordinator.endpoint, "--threads", "\(threads)",
             "--heartbeat-timeout", "\(heartbeatTimeout)"] + (data.map { ["--data", $0] } ?? [])
        }
        do {
            try coordinator.run()
        } catch {
            launcher.terminateAll()
            throw error
        }
        let codes = launcher.waitAll(timeout: 10)
        if let failed = codes.first(where: { $0.value != 0 }) {
            throw ClusterError.workerFailed("worker \(failed.key) exited with status \(failed.value) after the run")
        }
    }
}
