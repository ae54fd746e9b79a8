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
    @OptionGroup(title: "Workers") var balancing: BalanceFlags
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
        settings.maxConnections = Coordinator.maxConnections(plan, workers: workers, elastic: minWorkers != nil)
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
        options.balance = balancing.balance.isOn
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
        let server = try ZMQServerTransport(settings) { log($0) }
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
    @Option(name: .customLong("emulate-chunk-ms"),
            help: ArgumentHelp("Testing only: after computing its gradient for real, wait MS milliseconds per chunk this worker owns, as a slower node would (the weights stay exact; a moved chunk moves its wait).",
                               valueName: "ms"))
    var emulateChunkMs: Double?
    @Option(name: .customLong("emulate-slowdown"),
            help: ArgumentHelp("Testing only, with --emulate-chunk-ms: F times the wait from global step A to B (1-based, inclusive); F alone: every step.",
                               valueName: "F@A-B"))
    var emulateSlowdown: String?

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
        _ = try Self.chunkDelay(milliseconds: emulateChunkMs, slowdown: emulateSlowdown)
    }

    /// `--emulate-chunk-ms` and `--emulate-slowdown` as a `ChunkDelay`; nil without them.
    /// Also checks `recur train`'s hidden flags of the same names.
    static func chunkDelay(milliseconds: Double?, slowdown: String?) throws -> ChunkDelay? {
        guard let ms = milliseconds else {
            if slowdown != nil { throw ValidationError("--emulate-slowdown needs --emulate-chunk-ms") }
            return nil
        }
        guard ms >= 0, ms <= ChunkDelay.millisecondsLimit else {   // also refuses nan
            throw ValidationError("--emulate-chunk-ms must be a number of milliseconds from 0 to one hour (3600000), got \(ms)")
        }
        guard let slowdown else { return ChunkDelay(milliseconds: ms) }
        guard let (factor, steps) = ChunkDelay.slowdown(slowdown) else {
            throw ValidationError("--emulate-slowdown must be F@A-B (F times the wait from step A to B, 1 ≤ A ≤ B) or F, with 0 < F ≤ 1000, got \"\(slowdown)\"")
        }
        return ChunkDelay(milliseconds: ms, factor: factor, slowSteps: steps)
    }

    func run() throws {
        BLASInfo.useSingleThread()
        let corpus = try data.map { try Corpus.load(path: $0, cache: TokenCacheFlag.cache(tokenCache)) } ?? Corpus.builtin(task: task)
        var options = WorkerOptions(endpoint: connect, threads: threads ?? Machine.cores)
        options.heartbeatTimeout = transport.heartbeatTimeout
        options.reconnectTimeout = reconnectTimeout
        options.emulatedComputeMilliseconds = emulateCompute
        options.chunkDelay = try Self.chunkDelay(milliseconds: emulateChunkMs, slowdown: emulateSlowdown)
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
        if let delay = options.chunkDelay {
            print("slowed on purpose: each step waits \(delay.milliseconds) ms per chunk after computing" + (delay.factor == 1 ? "" : ", \(delay.factor)× " + (delay.slowSteps.map { "from step \($0.lowerBound) to \($0.upperBound)" } ?? "always")))
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
