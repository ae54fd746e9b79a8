import Foundation

/// What a launched process is in the job.
public enum LaunchRole: Equatable, Sendable {
    case coordinator
    case shard(Int)
    case worker(Int)
}

/// A process the policy wants running: `id` names it in `.exited`, `host` indexes the
/// plan's hosts, `label` prefixes its log lines (`198.18.0.3 worker 2`).
public struct LaunchProcess: Equatable, Sendable {
    public var id: Int
    public var role: LaunchRole
    public var host: Int
    public var label: String
    /// A restarted coordinator continues from its checkpoint.
    public var resume: Bool
}

/// What happened, as the driver tells the policy.
public enum LaunchEvent: Equatable, Sendable {
    /// Preparation is done: start the job.
    case begin
    /// A process ended: its exit status, 128+N when signal N killed it, 255 when ssh failed.
    case exited(process: Int, status: Int32)
    /// SIGHUP, SIGINT or SIGTERM reached the launcher.
    case signal(Int32)
    case timerElapsed(LaunchTimer)
    /// The answer to `.checkCheckpoint`.
    case checkpointChecked(exists: Bool)
    /// `--join JOB --host LINE` asked, with a reply channel named `reply.PID`.
    case joinRequested(reply: String, line: String)
    /// The answer to `.prepareJoin`: nil when the host is ready, else why not.
    case joinPrepared(reply: String, failure: String?)
    /// Every process has ended after `.stopAll`, and the job's secrets are deleted.
    case stopped
}

public enum LaunchTimer: Equatable, Sendable {
    /// --timeout: the whole job.
    case job
    /// --grace: after a failure, or after the coordinator finished.
    case grace
}

/// What the driver must do. The driver does them in order.
public enum LaunchAction: Equatable, Sendable {
    case start(LaunchProcess)
    /// One line on stderr after the program name.
    case log(String)
    /// Ask the coordinator's host whether a checkpoint exists (answer: `.checkpointChecked`).
    case checkCheckpoint
    /// Ship keys to a new host for worker ranks `ranks` (answer: `.joinPrepared`).
    case prepareJoin(reply: String, host: HostLine, ranks: Range<Int>)
    case reply(to: String, text: String)
    case startTimer(LaunchTimer, seconds: Int)
    /// Stop every process (EOF to the wrappers, then TERM/KILL), delete the secrets, then
    /// say `.stopped`.
    case stopAll
    case exit(Int32)
}

/// `137` → `137 (killed by signal 9, SIGKILL)`, `255` → `255 (ssh failed or lost the connection)`.
public func describeStatus(_ status: Int32) -> String {
    if status == 255 { return "255 (ssh failed or lost the connection)" }
    if status > 128 && status < 193 {
        let signal = status - 128
        return "\(status) (killed by signal \(signal), SIG\(signalName(signal)))"
    }
    return "\(status)"
}

/// Linux signal names as `kill -l` gives them.
public func signalName(_ signal: Int32) -> String {
    let names = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
                 "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
                 "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"]
    if signal >= 1 && Int(signal) <= names.count { return names[Int(signal) - 1] }
    if signal >= 34 && signal <= 49 { return signal == 34 ? "RTMIN" : "RTMIN+\(signal - 34)" }
    if signal >= 50 && signal <= 64 { return signal == 64 ? "RTMAX" : "RTMAX-\(64 - signal)" }
    return "\(signal)"
}
