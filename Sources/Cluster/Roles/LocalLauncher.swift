import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts W worker processes of this same binary on this machine (`recur train --workers
/// W`), forwards their output line by line with a `[worker pid N]` prefix, and reports any that
/// exits unexpectedly. Workers run in their own process group, so a Ctrl-C at the terminal
/// reaches only the coordinator, which checkpoints and then shuts them down itself.
public final class LocalLauncher: @unchecked Sendable {
    public struct Child {
        public let rank: Int
        public let pid: pid_t
    }

    private let lock = NSLock()
    private let running = DispatchGroup()   // one enter per live child
    private var children: [Child] = []
    private var exited: [pid_t: Int32] = [:]
    private let output: (String) -> Void
    /// Called (on a background thread) with the spawn index, pid and exit status when a
    /// worker exits before `finish` was called.
    public var onUnexpectedExit: ((Int, pid_t, Int32) -> Void)?
    private var finishing = false

    public init(output: @escaping (String) -> Void) {
        self.output = output
    }

    /// Spawns `executable arguments…` once per rank; `arguments(rank)` builds each command line.
    /// `environment` is added to this process's environment for the children (secrets that
    /// must not appear on a command line).
    public func start(count: Int, executable: String, environment: [String: String] = [:],
                      arguments: (Int) -> [String]) throws {
        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cEnvironment.forEach { free($0) } }
        for rank in 0..<count {
            var pipe: [Int32] = [0, 0]
            guard systemPipe(&pipe) == 0 else { throw ClusterError.launchFailed("pipe failed: \(String(cString: strerror(errno)))") }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
            posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
            posix_spawn_file_actions_addclose(&actions, pipe[0])
            posix_spawn_file_actions_addclose(&actions, pipe[1])
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
            posix_spawnattr_setpgroup(&attributes, 0)
            let argv = [executable] + arguments(rank)
            var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            var pid: pid_t = 0
            let status = posix_spawn(&pid, executable, &actions, &attributes, &cArgs, &cEnvironment)
            cArgs.forEach { free($0) }
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
            close(pipe[1])
            guard status == 0 else {
                close(pipe[0])
                terminateAll()
                throw ClusterError.launchFailed("cannot start worker \(rank) (\(executable)): \(String(cString: strerror(status)))")
            }
            lock.lock()
            children.append(Child(rank: rank, pid: pid))
            lock.unlock()
            running.enter()
            forward(fd: pipe[0], prefix: "[worker pid \(pid)] ")
            watch(pid: pid, rank: rank)
        }
    }

    private func forward(fd: Int32, prefix: String) {
        let output = self.output
        let thread = Thread {
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    output(prefix + String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            if !pending.isEmpty { output(prefix + String(decoding: pending, as: UTF8.self)) }
        }
        thread.start()
    }

    private func watch(pid: pid_t, rank: Int) {
        let thread = Thread { [weak self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            guard let self else { return }
            self.lock.lock()
            self.exited[pid] = code
            let unexpected = !self.finishing
            self.lock.unlock()
            self.running.leave()
            if unexpected { self.onUnexpectedExit?(rank, pid, code) }
        }
        thread.start()
    }

    /// Marks the end of the run: exits from now on are expected.
    public func finish() {
        lock.lock()
        finishing = true
        lock.unlock()
    }

    /// Waits up to `timeout` seconds for every worker to exit, then kills the rest.
    /// Returns the exit codes by rank.
    @discardableResult
    public func waitAll(timeout: Double) -> [Int: Int32] {
        finish()
        _ = running.wait(timeout: .now() + timeout)
        terminateAll()
        lock.lock()
        defer { lock.unlock() }
        var codes: [Int: Int32] = [:]
        for child in children { codes[child.rank] = exited[child.pid] }
        return codes
    }

    /// SIGTERM, then SIGKILL after a grace period, to every worker still running.
    public func terminateAll() {
        finish()
        lock.lock()
        let alive = children.filter { exited[$0.pid] == nil }
        lock.unlock()
        for child in alive { kill(child.pid, SIGTERM) }
        if running.wait(timeout: .now() + 3) == .timedOut {
            for child in alive { kill(child.pid, SIGKILL) }
            _ = running.wait(timeout: .now() + 3)
        }
    }

    /// The running executable's path (/proc/self/exe).
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// pipe(2) under a name the local variables do not shadow.
private func systemPipe(_ fds: UnsafeMutablePointer<Int32>) -> Int32 { pipe(fds) }
