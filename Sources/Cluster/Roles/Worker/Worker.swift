import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur work`.
public struct WorkerOptions: Sendable {
    public var threads: Int
    /// The coordinator silent for this long ends the worker.
    public var heartbeatTimeout: Double = 30
    /// Where the coordinator is, for messages ("no answer from … at ENDPOINT").
    public var endpoint: String
    /// Whether the link is CurveZMQ (messages then hint at keys).
    public var encrypted = false
    /// The job's join token (needed without CurveZMQ).
    public var joinToken = ""
    /// A local worker's coordinator process: when it is gone (the worker is re-parented),
    /// the worker exits at once instead of waiting out the heartbeat timeout.
    public var parentProcess: pid_t?
    /// After losing its coordinator, how long to wait for one at the same address (a
    /// restarted `recur serve --resume`) and join it again; 0: exit at once.
    public var reconnectTimeout: Double = 60
    /// `--emulate-compute`: each step waits this many milliseconds and pushes a pseudo-gradient
    /// (`EmulatedCompute`) instead of computing; nil: real forward and backward.
    public var emulatedComputeMilliseconds: Double?
    /// `--emulate-chunk-ms`: after the real (or emulated) compute, wait this long per chunk
    /// (`ChunkDelay`); nil: no wait.
    public var chunkDelay: ChunkDelay?

    public init(endpoint: String, threads: Int) {
        self.endpoint = endpoint
        self.threads = threads
    }

    var heartbeatInterval: Double { HeartbeatSchedule.interval(forTimeout: heartbeatTimeout) }
}

/// A worker process: says hello with its corpus fingerprint, receives the run config, its
/// stream block and starting state, then for every step takes the weights, computes the
/// gradient of its streams with a `GradientEngine` (K threads) and pushes it back with its
/// carried state. Heartbeats go out while it computes; a coordinator silent for longer than
/// the timeout ends the worker with an error, or, with a reconnect timeout, is waited for
/// at the same address (a restarted `recur serve --resume`) and joined again.
///
/// The protocol is `WorkerMachine`'s; `ClientDriver` runs it over the transports.
public final class Worker {
    public let options: WorkerOptions
    public let corpus: Corpus
    public let stop = StopRequest()
    private let log: (String) -> Void
    private let transport: ClientTransport
    private var driver: ClientDriver?
    /// The rank of the latest assignment; nil until the first welcome.
    public var rank: Int? { driver?.machine.rank }
    /// How to reach a parameter shard of a sharded run (the Welcome names its endpoint).
    public var connectToShard: ((String) throws -> ClientTransport)?

    public init(corpus: Corpus, options: WorkerOptions, transport: ClientTransport, log: @escaping (String) -> Void) {
        self.corpus = corpus
        self.options = options
        self.transport = transport
        self.log = log
    }

    /// Returns normally when the coordinator says the run is over. A stop request (signal)
    /// is reported to the coordinator before the worker exits, so the run ends at once.
    public func run() throws {
        let hello = Fingerprint.hello(corpus: corpus, threads: options.threads, joinToken: options.joinToken)
        let machine = WorkerMachine(setup: .init(options: options, corpus: corpus, hello: hello, pid: Int(getpid())))
        let connect = connectToShard ?? { _ in
            throw ClusterError.protocolViolation("welcome names parameter shards; this worker cannot reach shards")
        }
        let driver = ClientDriver(machine: machine, links: ClientLinks(coordinator: transport, connect: connect, log: log),
                                  stop: stop, parentProcess: options.parentProcess, log: log)
        self.driver = driver
        defer { driver.links.close() }
        try driver.run()
    }
}
