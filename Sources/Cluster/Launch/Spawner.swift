import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking queue of events from the launcher's threads (process waiters, signal sources,
/// the join channel, timers) to its one driver loop.
final class EventQueue<Event>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Event] = []

    func post(_ event: Event) {
        condition.lock()
        items.append(event)
        condition.signal()
        condition.unlock()
    }

    /// Events taken out of turn go back to the front, in their order.
    func putBack(_ events: [Event]) {
        guard !events.isEmpty else { return }
        condition.lock()
        items.insert(contentsOf: events, at: 0)
        condition.signal()
        condition.unlock()
    }

    /// The next event; nil when `deadline` passes first.
    func take(until deadline: Date? = nil) -> Event? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty {
            // (wait(until: .distantFuture) traps in corelibs-foundation: no deadline, no date.)
            guard let deadline else { condition.wait(); continue }
            if !condition.wait(until: deadline) && items.isEmpty { return nil }
        }
        return items.removeFirst()
    }
}

/// Whole lines to stdout or stderr, one write each under one lock, so that lines of
/// different processes never interleave.
final class LineWriter: @unchecked Sendable {
    private let lock = NSLock()

    func write(_ text: String, to fd: Int32) {
        lock.lock()
        defer { lock.unlock() }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            bytes = bytes.dropFirst(n)
        }
    }
}

/// Where a child's stdout or stderr goes: ours, /dev/null, a file, or back to ours line by
/// line with a `[label] ` prefix (through a pipe read by a thread of ours).
enum ChildOutput {
    case inherit
    case null
    case file(String)
    case prefixed(String)
    /// Prefixed, to our stdout whichever stream it is.
    case prefixedOnStdout(String)
    /// stderr only: wherever stdout goes.
    case stdout
    /// A descriptor of ours (the caller closes it).
    case descriptor(Int32)
}

/// Starts processes with posix_spawn and reports each one's end as `(pid, status)`: the exit
/// status, or 128+N when signal N killed it (as a shell reports it).
///
/// Every descriptor of ours is close-on-exec, so a child holds only its own 0, 1 and 2: the
/// keepalive pipe's write end stays the launcher's alone. Children get the default action for
/// TERM, HUP and PIPE and keep SIGINT ignored (as a shell's background jobs do): a Ctrl-C
/// reaches the launcher, which stops them in order.
final class Spawner: @unchecked Sendable {
    struct SpawnError: Error, CustomStringConvertible { var description: String }

    private let lock = NSLock()
    private var live: Set<pid_t> = []
    let writer: LineWriter
    /// One enter per forwarding thread; `drain` waits for them.
    private let forwarders = DispatchGroup()
    private let exited: (pid_t, Int32) -> Void

    init(writer: LineWriter, exited: @escaping (pid_t, Int32) -> Void) {
        self.writer = writer
        self.exited = exited
    }

    func isRunning(_ pid: pid_t) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return live.contains(pid)
    }

    /// Runs `argv` (found on PATH) with `stdin` (a descriptor of ours) as its standard input.
    /// Unless `watch` is false (the caller waits for it), its end is reported.
    func spawn(_ argv: [String], stdin: Int32, stdout: ChildOutput, stderr: ChildOutput, watch watched: Bool = true) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        var readers: [(fd: Int32, label: String, target: Int32)] = []
        var childEnds: [Int32] = []
        defer { childEnds.forEach { close($0) } }
        for (output, target) in [(stdout, Int32(1)), (stderr, Int32(2))] {
            switch output {
            case .inherit: break
            case .stdout: posix_spawn_file_actions_adddup2(&actions, 1, target)
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .null: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            case .file(let path): posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            case .prefixed(let label), .prefixedOnStdout(let label):
                let (read, write) = try Self.pipe()
                posix_spawn_file_actions_adddup2(&actions, write, target)
                if case .prefixedOnStdout = output { readers.append((read, label, 1)) } else { readers.append((read, label, target)) }
                childEnds.append(write)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t(), none = sigset_t()
        sigemptyset(&defaults)
        sigemptyset(&none)
        for signal in [SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        lock.lock()
        let status = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArguments, environ)
        if status == 0 && watched { live.insert(pid) }
        lock.unlock()
        guard status == 0 else {
            readers.forEach { close($0.fd) }
            throw SpawnError(description: "cannot run \(argv[0]): \(String(cString: strerror(status)))")
        }
        for reader in readers { forward(reader.fd, prefix: "[\(reader.label)] ", to: reader.target) }
        if watched { watch(pid) }
        return pid
    }

    /// Runs `argv` to its end; its status and standard output (stderr is ours).
    func capture(_ argv: [String]) throws -> (status: Int32, output: String) {
        let (read, write) = try Self.pipe()
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        let pid: pid_t
        do {
            pid = try spawn(argv, stdin: null, stdout: .descriptor(write), stderr: .inherit, watch: false)
        } catch {
            close(read); close(write)
            throw error
        }
        close(write)
        var output: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(read, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(read)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), String(decoding: output, as: UTF8.self))
    }

    /// A pipe, both ends close-on-exec.
    static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else { throw SpawnError(description: "pipe failed: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// Sends `signal` to `pid` after `seconds` if it still runs (a bounded helper, like `timeout`).
    func limit(_ pid: pid_t, seconds: Double, signal: Int32 = SIGTERM) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            defer { lock.unlock() }
            if live.contains(pid) { kill(pid, signal) }
        }
    }

    func signal(_ pids: [pid_t], _ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        for pid in pids where live.contains(pid) { kill(pid, signal) }
    }

    /// Waits (at most `seconds`) until every forwarding thread has written its last line.
    func drain(seconds: Double) {
        _ = forwarders.wait(timeout: .now() + seconds)
    }

    private func watch(_ pid: pid_t) {
        let thread = Thread { [self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            lock.lock()
            live.remove(pid)
            lock.unlock()
            exited(pid, code)
        }
        thread.start()
    }

    /// Copies `fd` to our `target` line by line with `prefix` until end of file.
    private func forward(_ fd: Int32, prefix: String, to target: Int32) {
        forwarders.enter()
        let thread = Thread { [self] in
            defer { close(fd); forwarders.leave() }
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending += buffer[0..<n]
                while let newline = pending.firstIndex(of: 10) {
                    writer.write(prefix + String(decoding: pending[...newline], as: UTF8.self), to: target)
                    pending.removeSubrange(...newline)
                }
            }
            if !pending.isEmpty { writer.write(prefix + String(decoding: pending, as: UTF8.self) + "\n", to: target) }
        }
        thread.start()
    }
}
