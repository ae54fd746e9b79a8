import ArgumentParser
import Cluster
import Foundation
import Recurrent
import Training
import Wire

/// Flags of both roles for the transport: liveness and CurveZMQ key files.
struct TransportFlags: ParsableArguments {
    @Option(name: .customLong("heartbeat-timeout"), help: "Seconds of silence after which the peer counts as dead.")
    var heartbeatTimeout = 30.0
    @Option(help: "CurveZMQ key file of this process (from `recur keygen`; mode 0600). Enables encryption.")
    var key: String?
    @Option(name: .customLong("token-file"), help: "Without --key: file (mode 0600) with the job's join token; serve writes a new one there if it is missing. Default: RECUR_JOIN_TOKEN, else serve makes one and prints it.")
    var tokenFile: String?

    func validateValues() throws {
        try Self.validateHeartbeatTimeout(heartbeatTimeout)
    }

    /// A liveness timeout in seconds: positive and finite (nan and inf would never expire).
    /// `train` has its own --heartbeat-timeout flag and calls this from its validate().
    static func validateHeartbeatTimeout(_ seconds: Double) throws {
        try validateTimeout(seconds, flag: "--heartbeat-timeout")
    }

    /// Seconds given to `flag`: positive and finite, at most a year (a longer wait is a typo
    /// that would overflow the deadline arithmetic).
    static func validateTimeout(_ seconds: Double, flag: String) throws {
        guard seconds > 0, seconds.isFinite, seconds <= 365 * 24 * 3600 else {
            throw ValidationError("\(flag) must be a positive number of seconds up to one year (31536000), got \(seconds)")
        }
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the coordinator (parameter server) and wait for --workers workers.",
        discussion: """
        Workers join with `recur work --connect ENDPOINT`. Binding a non-loopback address \
        needs --key and --authorized-keys (CurveZMQ) unless --insecure is given.
        """)

    @Option(help: "ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5555.")
    var bind = "tcp://127.0.0.1:5555"
    @Option(help: "Workers (`recur work` processes, anywhere) that must join before the first step.")
    var workers = 1
    @Option(help: "Streams per gradient chunk, the fixed unit of parallel work (default: batch/4); --workers must not exceed the chunks.")
    var chunk: Int?
    @OptionGroup var sharding: ShardFlags
    @OptionGroup(title: "Model") var model: ModelFlags
    @OptionGroup(title: "Data") var data: DataFlags
    @OptionGroup(title: "Optimization") var optimization: OptimizationFlags
    @OptionGroup(title: "Checkpoints") var checkpoints: CheckpointFlags
    @OptionGroup(title: "Output") var output: OutputFlags
    @OptionGroup(title: "Sampling") var sampling: SamplingFlags
    @OptionGroup(title: "Transport") var transport: TransportFlags
    @Option(name: .customLong("authorized-keys"), help: "File of worker public keys allowed to join (one Z85 key per line or key file lines).")
    var authorizedKeys: String?
    @Flag(help: "Allow a non-loopback bind without encryption and authentication.")
    var insecure = false
    @Option(name: .customLong("join-timeout"), help: "Seconds to wait for all workers to join.")
    var joinTimeout = 300.0
    @Option(name: .customLong("min-workers"), help: "Go on without a lost worker while at least this many remain: its chunks move to the others and the step is computed again, bit for bit (default: all, no loss tolerated).")
    var minWorkers: Int?
    @Option(name: .customLong("shard-endpoints"), help: "With --shards S > 1: the S endpoints where `recur shard` processes listen, comma-separated, in shard order. They use this coordinator's key pair, and the allow-list must hold its public key.")
    var shardEndpoints: String?

    var shardList: [String] { shardEndpoints.map { $0.split(separator: ",").map(String.init) } ?? [] }

    func validate() throws {
        try optimization.validateValues()
        try checkpoints.validateValues(evalEvery: output.evalEvery)
        try output.validateValues()
        try sampling.validateValues()
        try transport.validateValues()
        if workers < 1 { throw ValidationError("--workers must be at least 1, got \(workers)") }
        try sharding.validateValues()
        try TransportFlags.validateTimeout(joinTimeout, flag: "--join-timeout")
        if let minWorkers, !(1...workers).contains(minWorkers) {
            throw ValidationError("--min-workers must be between 1 and --workers (\(workers)), got \(minWorkers)")
        }
        if (transport.key == nil) != (authorizedKeys == nil) {
            throw ValidationError("--key and --authorized-keys go together")
        }
        if sharding.shards > 1 || shardEndpoints != nil, shardList.count != sharding.shards {
            throw ValidationError("--shards \(sharding.shards) needs as many --shard-endpoints, got \(shardList.count)")
        }

        try Endpoint.validate(bind, flag: "--bind", bind: true)
        for endpoint in shardList { try Endpoint.validate(endpoint, flag: "--shard-endpoints", bind: false) }
        if transport.key == nil && !insecure && !Endpoint.isLocal(bind) {
            throw ValidationError("refusing to bind \(bind) without --key/--authorized-keys (CurveZMQ); pass --insecure to allow unauthenticated workers")
        }
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let run = try TrainingRun(checkpoints: checkpoints, output: output, sampling: sampling)
        guard let setup = try run.setup(model: model, data: data, optimization: optimization, chunk: chunk) else { return }
        let plan = try run.plan(setup, workers: workers, shards: sharding.shards, local: false)
        // Key files and a given token are inputs: read before anything is written or bound.
        var settings = ZMQServerSettings(bind: Endpoint.bindable(bind), maxMessageBytes: Coordinator.decodeLimits(plan).maxMessageBytes)
        settings.ioThreads = min(workers, 4)
        settings.sendTimeout = transport.heartbeatTimeout
        var shardCurve: CurveClientSettings?
        if let keyPath = transport.key, let allowPath = authorizedKeys {
            let own = try KeyFile.keyPair(keyPath)
            settings.curve = CurveServerSettings(secretKey: own.secretKey, allowedPublicKeys: try KeyFile.publicKeys(allowPath))
            // Shards run with this coordinator's key pair; it connects to them as a client with it.
            shardCurve = CurveClientSettings(serverPublicKey: own.publicKey, publicKey: own.publicKey, secretKey: own.secretKey)
        }
        var options = CoordinatorOptions(workers: workers)
        options.heartbeatTimeout = transport.heartbeatTimeout
        options.joinTimeout = joinTimeout
        options.minWorkers = minWorkers
        var tokenNote: String?
        if settings.curve == nil {
            let (token, fresh) = try JoinToken.forCoordinator(file: transport.tokenFile)
            options.joinToken = token
            if fresh {
                // A token written to a file is never printed: the file is how it travels.
                tokenNote = transport.tokenFile.map { "wrote a new join token to \($0): give workers --token-file \($0)" }
                    ?? "join token \(token): workers without it are refused; give workers \(JoinToken.environmentVariable)=\(token) in their environment"
            }
        }
        let session = try run.session(setup, plan: plan, threads: 1)
        let log = run.console.line
        if let tokenNote { log(tokenNote) }
        let server = try ZMQServerTransport(settings) { log("rejected connection: \($0)") }
        let stop = StopRequest()
        Signals.forward { stop.request($0, exitCode: $1) }
        var shards: ShardConnection?
        if sharding.shards > 1 {
            let timeout = transport.heartbeatTimeout, curve = shardCurve
            shards = ShardConnection(endpoints: shardList, connect: {
                try ZMQClientTransport(connect: $0, sendTimeout: timeout, curve: curve, context: server.context)
            }, update: session.update)
        }
        try run.resumable {
            let coordinator = try Coordinator(plan: session.plan, corpus: setup.corpus, options: options, transport: server,
                                              stop: stop, update: session.update, shards: shards, log: log)
            try TrainingLoop(session: session, source: coordinator, store: coordinator.store, stop: stop, report: run.report(session)).run()
        }
        run.sample(session, label: "sample")
    }
}

struct WorkCommand: ParsableCommand {
    /// Set by `recur train --workers W` for its workers: the pid whose end ends them.
    static let parentVariable = "RECUR_PARENT_PID"
    static let configuration = CommandConfiguration(
        commandName: "work",
        abstract: "Run a worker: it receives config, streams and weights from the coordinator.",
        usage: "recur work --connect ENDPOINT [<options>]",
        discussion: "--data must name the same corpus as the coordinator's (its fingerprint is checked).")

    @Option(help: "Coordinator endpoint, e.g. tcp://10.0.0.1:5555.")
    var connect: String
    @Option(help: "Threads of this worker (default: the machine's cores).")
    var threads: Int?
    @Option(help: "The coordinator's corpus file on this node (default: the built-in data of --task).")
    var data: String?
    @Option(help: "Without --data: the built-in data of this task, lm or classify (default: lm).")
    var task: TrainingTask?
    @Option(name: .customLong("token-cache"), help: "Directory of token files (as for train; default: $XDG_CACHE_HOME/recur or ~/.cache/recur; \"\" = none).")
    var tokenCache: String?
    @Option(name: .customLong("reconnect-timeout"), help: "After losing the coordinator, wait this many seconds for one at the same address (a restarted `recur serve --resume`) and join it again (0 = exit at once).")
    var reconnectTimeout = 60.0
    @OptionGroup var transport: TransportFlags
    @Option(name: .customLong("server-key"), help: "The coordinator's public key file (needed with --key).")
    var serverKey: String?
    @Option(name: .customLong("emulate-compute"),
            help: ArgumentHelp("Benchmarks only: instead of forward and backward, wait MS milliseconds per step and push a fixed pseudo-gradient of the model's size; encoding, sending, the coordinator's update and the broadcast stay real. Figures of such a run are emulated.",
                               valueName: "ms"))
    var emulateCompute: Double?

    /// An emulated step lasts at most an hour: a longer one is a typo (seconds for ms).
    static let emulateComputeLimit = 3_600_000.0

    func validate() throws {
        try transport.validateValues()
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let ms = emulateCompute, !(ms > 0 && ms <= Self.emulateComputeLimit) {   // also refuses nan
            throw ValidationError("--emulate-compute must be a positive number of milliseconds up to one hour (3600000), got \(ms)")
        }
        if (transport.key == nil) != (serverKey == nil) { throw ValidationError("--key and --server-key go together") }
        try Endpoint.validate(connect, flag: "--connect", bind: false)
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let corpus = try data.map { try Corpus.load(path: $0, cache: TokenCacheFlag.cache(tokenCache)) } ?? Corpus.builtin(task: task)
        var options = WorkerOptions(endpoint: connect, threads: threads ?? Machine.cores)
        options.heartbeatTimeout = transport.heartbeatTimeout
        options.reconnectTimeout = reconnectTimeout
        options.emulatedComputeMilliseconds = emulateCompute
        var curve: CurveClientSettings?
        if let keyPath = transport.key, let serverPath = serverKey {
            let own = try KeyFile.keyPair(keyPath)
            guard let server = try KeyFile.read(serverPath, flag: "--server-key").publicKey else { throw ValidationError("--server-key \(serverPath) holds no public-key") }
            curve = CurveClientSettings(serverPublicKey: server, publicKey: own.publicKey, secretKey: own.secretKey)
            options.encrypted = true
        } else if let token = try JoinToken.given(file: transport.tokenFile) {
            options.joinToken = token
        }
        let client = try ZMQClientTransport(connect: connect, sendTimeout: transport.heartbeatTimeout, curve: curve)
        if let parent = ProcessInfo.processInfo.environment[Self.parentVariable].flatMap({ pid_t($0) }) {
            options.parentProcess = parent
        }
        let worker = Worker(corpus: corpus, options: options, transport: client) { print($0); fflush(stdout) }
        if let ms = emulateCompute {
            print("compute is emulated: each step waits \(ms) ms and pushes a pseudo-gradient (benchmark figures of this run are emulated)")
        }
        let timeout = transport.heartbeatTimeout
        worker.connectToShard = { try ZMQClientTransport(connect: $0, sendTimeout: timeout, curve: curve, context: client.context) }
        let stop = worker.stop
        Signals.forward { stop.request($0, exitCode: $1) }
        try worker.run()
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CurveZMQ key pair: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub.")

    @Option(help: "Directory for the key files.")
    var out = "."
    @Option(help: "Base name of the key files.")
    var name = "recur"
    @Flag(help: "Replace existing key files of that name (a replaced secret key locks out whoever uses it).")
    var force = false

    func run() throws {
        let secretPath = "\(out)/\(name).key", publicPath = "\(out)/\(name).pub"
        for path in [secretPath, publicPath] where !force && FileManager.default.fileExists(atPath: path) {
            throw OutputPath.Unusable(flag: "--out", path: path, reason: "exists; refusing to replace a key (pass --force, or another --name)")
        }
        let pair = try CurveKeys.generate()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try KeyFile.write(secretPath, "# recur CurveZMQ key pair: keep secret\npublic-key = \(pair.publicKey)\nsecret-key = \(pair.secretKey)\n", mode: 0o600)
        try KeyFile.write(publicPath, "# recur CurveZMQ public key\npublic-key = \(pair.publicKey)\n", mode: 0o644)
        print("wrote \(secretPath) and \(publicPath)")
    }
}

/// Key files: `public-key = Z85` / `secret-key = Z85` lines, `#` comments.
enum KeyFile {
    struct Keys { var publicKey: String?; var secretKey: String? }

    /// Parses a key file. A file holding a secret key must be private to its owner (no group
    /// or other permission bits, as ssh demands of private keys): refused otherwise, with the
    /// chmod to run.
    static func read(_ path: String, flag: String = "key file") throws -> Keys {
        let (text, mode) = try readText(path, flag: flag)
        var keys = Keys()
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].hasPrefix("#") else { continue }
            do {
                try CurveKeys.validate(parts[1])
            } catch {
                throw ValidationError("\(path): \(parts[0]): \(error)")
            }
            if parts[0] == "public-key" { keys.publicKey = parts[1] }
            if parts[0] == "secret-key" { keys.secretKey = parts[1] }
        }
        guard keys.publicKey != nil || keys.secretKey != nil else { throw ValidationError("\(path) holds no key") }
        if keys.secretKey != nil, mode & 0o077 != 0 {
            throw ValidationError("key file \(path) holds a secret key but group or others may access it (mode \(String(mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        return keys
    }

    /// The file's text and permission bits, both from one open descriptor.
    static func readText(_ path: String, flag: String = "key file") throws -> (String, mode_t) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ValidationError("cannot read \(flag) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size <= 1 << 16 else {
            throw ValidationError("cannot read \(flag) \(path): not a regular file of at most 64 KiB")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            filled += n
        }
        guard let text = String(validating: bytes[..<filled], as: UTF8.self) else {
            throw ValidationError("cannot read \(flag) \(path): not UTF-8 text")
        }
        return (text, status.st_mode)
    }

    /// This process's own pair from a `recur keygen` .key file (the public key derived from
    /// the secret when the file omits it).
    static func keyPair(_ path: String) throws -> (publicKey: String, secretKey: String) {
        let keys = try read(path, flag: "--key")
        guard let secret = keys.secretKey else { throw ValidationError("--key \(path) holds no secret-key") }
        return (try keys.publicKey ?? CurveKeys.publicKey(fromSecret: secret), secret)
    }

    /// Allow-list: `public-key = KEY` lines (as `recur keygen` writes them) or bare 40-char
    /// Z85 keys, one per line; `#` starts a comment line. Z85 itself uses `=` and `#`, so a
    /// line is a bare key when it is exactly one 40-character word.
    static func publicKeys(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read --authorized-keys \(path)")
        }
        var keys: [String] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let key: String
            if line.count == 40, !line.contains(" ") {
                key = line
            } else if line.hasPrefix("public-key") {
                key = line.split(separator: "=", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces)
            } else {
                continue   // blank, comment, or another field (secret-key is never an allow-list entry)
            }
            do { try CurveKeys.validate(key) } catch { throw ValidationError("\(path): \(error)") }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw ValidationError("\(path) lists no public key") }
        return keys
    }

    static func write(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, mode)
        let bytes = Array(text.utf8)
        guard systemWrite(fd, bytes, bytes.count) == bytes.count else { throw ValidationError("cannot write \(path)") }
    }
}

enum Endpoint {
    /// A ZeroMQ endpoint this program can use: `tcp://HOST:PORT` (PORT 1–65535, or `*` for a
    /// bind), `ipc://PATH` or `inproc://NAME`. Anything else is a bad flag (exit 64), found
    /// before a socket exists.
    static func validate(_ endpoint: String, flag: String, bind: Bool) throws {
        func refuse(_ why: String) -> ValidationError {
            ValidationError("\(flag) \(endpoint): \(why) (expected tcp://HOST:PORT or ipc://PATH, e.g. tcp://127.0.0.1:5555)")
        }
        if let rest = endpoint.dropPrefix("ipc://") ?? endpoint.dropPrefix("inproc://") {
            guard !rest.isEmpty, !rest.contains("\0") else { throw refuse("no path") }
            return
        }
        guard let address = endpoint.dropPrefix("tcp://") else { throw refuse("unknown transport") }
        guard let colon = address.lastIndex(of: ":"), colon != address.startIndex else { throw refuse("no host:port") }
        let port = address[address.index(after: colon)...]
        if bind && port == "*" { return }
        guard let number = Int(port), (1...65535).contains(number) else { throw refuse("port must be 1–65535") }
    }

    /// A bind address libzmq accepts: it binds interfaces and addresses, not host names, so
    /// `localhost` (which this program calls loopback) becomes 127.0.0.1.
    static func bindable(_ endpoint: String) -> String {
        endpoint.hasPrefix("tcp://localhost:") ? "tcp://127.0.0.1:" + endpoint.dropFirst("tcp://localhost:".count) : endpoint
    }

    /// ipc/inproc and tcp on loopback addresses stay on this machine.
    static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst(6))
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// SIGINT, SIGTERM and SIGHUP become a stop request (exit 130/143/129), handled at the next
/// step boundary after a checkpoint.
enum Signals {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    static func forward(_ handler: @escaping (String, Int32) -> Void) {
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler("interrupted by \(name)", 128 + number) }
            source.resume()
            sources.append(source)
        }
    }
}

/// read(2) under a name the local variables do not shadow.
private func systemRead(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, bytes, count) }

/// write(2) under a name `KeyFile.write` does not shadow.
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }

extension String {
    /// The rest after `prefix`, nil when the string does not start with it.
    func dropPrefix(_ prefix: String) -> String? { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil }
}
