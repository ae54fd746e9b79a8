import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The running launcher's end of `--join`: a fifo JOBDIR/join (JOBDIR the launcher's private
/// 0700 directory) that requests are written into, one line each, `reply.PID HOST-LINE`; the
/// answer is one line written into the requester's own fifo JOBDIR/reply.PID.
/// The launcher holds the fifo open for reading and writing, so it never sees end of file
/// and a writer never blocks.
final class JoinChannel: @unchecked Sendable {
    private let directory: String
    private let fd: Int32

    init(directory: String, request: @escaping @Sendable (String) -> Void) throws {
        self.directory = directory
        let path = directory + "/join"
        guard mkfifo(path, 0o600) == 0 else { throw Spawner.SpawnError(description: "cannot make \(path): \(String(cString: strerror(errno)))") }
        fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw Spawner.SpawnError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        let fd = self.fd
        Thread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                pending += buffer[0..<n]
                while let newline = pending.firstIndex(of: 10) {
                    request(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
        }.start()
    }

    /// Writes `text` into JOBDIR/`name` if that is a fifo with a reader, trying for up to 5 s
    /// (off the caller's thread): a requester that gave up is not waited for.
    func answer(_ name: String, _ text: String) {
        let path = directory + "/" + name
        DispatchQueue.global().async {
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFIFO else { return }
            for _ in 0..<100 {
                let out = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if out >= 0 {
                    let line = Array((text + "\n").utf8)
                    _ = line.withUnsafeBytes { write(out, $0.baseAddress, $0.count) }
                    Glibc.close(out)
                    return
                }
                guard errno == ENXIO || errno == EINTR else { return }
                usleep(50_000)
            }
        }
    }

    func close() { unlink(directory + "/join") }
}

/// `--join JOB --host LINE`: asks the running launcher of JOB (same user, same machine) to
/// add a host, and prints its answer. Exit 0 when added, 69 otherwise.
public enum JoinClient {
    public static func run(program: String, job: String, line: String, temporaryDirectory: String) -> Int32 {
        let say = { (text: String) in FileHandle.standardError.write(Data("\(program): \(text)\n".utf8)) }
        let directory = "\(temporaryDirectory)/\(job).launch", join = directory + "/join"
        var info = stat()
        guard lstat(join, &info) == 0, info.st_mode & S_IFMT == S_IFIFO, info.st_uid == getuid() else {
            say("no running job \(job) of this user here (no \(join))")
            return 69
        }
        let name = "reply.\(getpid())", reply = directory + "/" + name
        guard mkfifo(reply, 0o600) == 0 else {
            say("cannot make \(reply): \(String(cString: strerror(errno)))")
            return 69
        }
        defer { unlink(reply) }
        // Read and write: the open does not wait for the launcher, and end of file never comes early.
        let input = open(reply, O_RDWR | O_CLOEXEC)
        let output = open(join, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        defer { Glibc.close(input); if output >= 0 { Glibc.close(output) } }
        let request = Array("\(name) \(line)\n".utf8)
        guard input >= 0, output >= 0, request.withUnsafeBytes({ write(output, $0.baseAddress, $0.count) }) == request.count else {
            say("job \(job) does not answer")
            return 69
        }
        guard let answer = readLine(input, seconds: 120) else {
            say("job \(job) did not answer within 120 s")
            return 69
        }
        say(answer)
        return answer.hasPrefix("added") ? 0 : 69
    }

    /// One line from `fd` within `seconds`, without its newline.
    static func readLine(_ fd: Int32, seconds: Int) -> String? {
        var received: [UInt8] = []
        let deadline = Date() + Double(seconds)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 500)
            guard ready > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            received += buffer[0..<n]
            if let newline = received.firstIndex(of: 10) { return String(decoding: received[..<newline], as: UTF8.self) }
        }
        return nil
    }
}
