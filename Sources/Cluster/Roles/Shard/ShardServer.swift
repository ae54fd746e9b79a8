import Foundation
import Recurrent
import Training
import Wire

/// Settings of `recur shard`.
public struct ShardOptions: Sendable {
    /// The coordinator silent for this long ends the shard.
    public var heartbeatTimeout: Double = 30
    /// Without CurveZMQ: the job's secret, which the coordinator's setup and every worker's
    /// hello must carry (nil: CurveZMQ's allow-list admits peers).
    public var joinToken: String?
    /// After losing its coordinator, how long to wait for a new setup (a restarted
    /// `recur serve --resume`) before exiting.
    public var reconnectTimeout: Double = 60
    /// The largest message this shard's socket takes (`recur shard --max-message-bytes`),
    /// fixed when it binds, before any setup names the model: its launcher computes it from
    /// the run (`ShardServer.maxMessageBytes(for:)`).
    public var maxMessageBytes = ShardServer.defaultMaxMessageBytes

    public init() {}

    var heartbeatInterval: Double { HeartbeatSchedule.interval(forTimeout: heartbeatTimeout) }
}

/// One parameter server of a sharded run (`--shards S`, ps-lite's server role). It owns one
/// range of the parameter slab (`SlabPartition`) with its optimizer state. The coordinator
/// connects first and sends `ShardSetup`; the W workers connect and say hello with their rank.
/// Then for every step:
///
///     broadcast the range's weights → gather each worker's node sums for the range → add
///     them in the fixed reduction tree → ÷ tokens → Σg² of each norm block to the
///     coordinator → its global norm back → clip, optimizer step → broadcast the next weights
///
/// The protocol is `ShardMachine`'s; `ServerDriver` runs it over the transport. The arithmetic
/// is `RangeUpdate`'s, element by element the same as in-process training.
public final class ShardServer {
    public let options: ShardOptions
    public let stop = StopRequest()
    private let log: (String) -> Void
    private let messenger: ServerMessenger

    public init(options: ShardOptions, transport: ServerTransport, log: @escaping (String) -> Void) {
        self.options = options
        self.log = log
        // Until the setup names the model, the bound the shard was started with applies.
        let bytes = max(options.maxMessageBytes, 1)
        messenger = ServerMessenger(transport: transport, limits: DecodeLimits(maxMessageBytes: bytes, maxTensorElements: max(bytes / 4, 1)),
                                    log: log)
    }

    /// The largest message a shard of `plan`'s run takes: its setup, the range's weights and
    /// up to two optimizer buffers (a range may be the whole slab). One function for every
    /// launcher (`recur train --shards`, `recur launch`) and for the coordinator's hint when a
    /// shard started with less drops the setup unread.
    public static func maxMessageBytes(for plan: RunPlan) -> Int {
        DecodeLimits.sharded(layout: plan.layout).maxMessageBytes
    }

    /// A bare `recur shard`'s bound: the setup of a model of up to about 1.3 million parameters
    /// (an LSTM of 2 layers of 256 over 64 symbols has 0.87 million).
    public static let defaultMaxMessageBytes = 16 << 20

    public var endpoint: String { messenger.transport.endpoint }

    /// Serves until the coordinator says the run is over (returns) or goes silent (throws).
    public func serve() throws {
        defer {
            messenger.rejections.flush()
            messenger.transport.close()
        }
        log("shard on \(endpoint): waiting for the coordinator")
        let driver = ServerDriver(role: ShardMachine(options: options), messenger: messenger, stop: stop,
                                  heartbeatTimeout: options.heartbeatTimeout, log: log)
        try driver.run()
    }
}

extension DecodeLimits {
    /// A sharded run's bound: a range may hold the whole slab (S = 1 … P), and a setup or state
    /// report carries the range's weights and up to two optimizer buffers.
    static func sharded(layout: ParameterLayout, extraValues: Int = 0) -> DecodeLimits {
        DecodeLimits(maxMessageBytes: (3 * layout.count + extraValues) * MemoryLayout<Float>.size + (1 << 16),
                     maxTensorElements: max(layout.count, extraValues, 1))
    }
}
