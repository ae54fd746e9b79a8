import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The end of a job, whatever ended it: every process stopped, the secrets deleted on every
/// host that received them and locally.
extension LaunchDriver {
    /// Stops every process: end of file on the keepalive pipe first (each remote wrapper then
    /// sends TERM to its process, KILL 10 s later, and deletes its host's secrets), then TERM
    /// and KILL to ssh processes that outlive the request.
    func stopEverything() {
        if let keepalive {
            close(keepalive.write)
            close(keepalive.read)
            self.keepalive = nil
        }
        var survivors = waitForProcesses(seconds: 15)
        guard !survivors.isEmpty else { return }
        say("stopping \(survivors.count) ssh process(es) that outlived the stop request")
        spawner.signal(survivors, SIGTERM)
        survivors = waitForProcesses(seconds: 5)
        spawner.signal(survivors, SIGKILL)
    }

    /// Waits until the job's processes and helpers have ended or `seconds` passed; the pids
    /// still running.
    private func waitForProcesses(seconds: Double) -> [pid_t] {
        let deadline = Date() + seconds
        while !(jobProcesses.isEmpty && helpers.isEmpty), let event = events.take(until: deadline) {
            takeWhileStopping(event)
        }
        return Array(jobProcesses.keys) + Array(helpers.keys)
    }

    /// Events after the stop began: ends are noted, join requests refused, signals and
    /// timers have nothing left to do.
    private func takeWhileStopping(_ event: Event) {
        switch event {
        case .exited(let pid, let status):
            jobProcesses.removeValue(forKey: pid)
            if case .joinPreparation(_, let host, _, _)? = helpers.removeValue(forKey: pid), status != 255 {
                shippedHosts.append(host)
            }
        case .joinLine:
            guard let request = translate(event) else { return }
            for case .reply(let to, let text) in policy.handle(request) { joinChannel?.answer(to, text) }
        case .signal, .timer:
            break
        }
    }

    /// Stops everything (once), deletes the job directories on the hosts that hold one
    /// (`ssh HOST rm -rf DIR`, 20 s at most each, in parallel) and the local directory.
    func cleanup() {
        guard !cleaned else { return }
        cleaned = true
        stopEverything()
        var removers: [pid_t: Int] = [:]
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        for h in Set(shippedHosts).sorted() {
            let argv = plan.sshBase + ["--", plan.hosts[h].target, plan.removeCommand(h)]
            if let pid = try? spawner.spawn(argv, stdin: null, stdout: .null, stderr: .null) {
                removers[pid] = h
                spawner.limit(pid, seconds: 20)
            } else {
                say("could not delete the job's secrets on \(plan.hosts[h].target): \(plan.remoteJobDirectory(h))")
            }
        }
        close(null)
        var failed: [Int] = []
        while !removers.isEmpty, let event = events.take() {
            guard case .exited(let pid, let status) = event, let h = removers.removeValue(forKey: pid) else { continue }
            if status != 0 { failed.append(h) }
        }
        for h in failed.sorted() {
            say("could not delete the job's secrets on \(plan.hosts[h].target): \(plan.remoteJobDirectory(h))")
        }
        spawner.drain(seconds: 5)
        joinChannel?.close()
        try? FileManager.default.removeItem(atPath: localDirectory)
    }
}
