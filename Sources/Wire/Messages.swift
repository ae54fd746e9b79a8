// Swift mirrors of proto/recur.proto. Field comments there are the reference; these types add
// nothing but names in full words. `WireCodec` holds the one encoder and one decoder.

/// The message types, named as the Envelope's `body` fields (also in logs and decode-wire.py).
public enum MessageKind: String, CaseIterable, Sendable {
    case hello, welcome, weights
    case gradientPush = "gradient_push"
    case heartbeat, shutdown, error
    case shardSetup = "shard_setup"
    case shardCommand = "shard_command"
    case shardReport = "shard_report"
    case reissue

    /// The word for "… for step 7, expected step 8".
    var noun: String {
        switch self {
        case .gradientPush: return "gradient"
        default: return rawValue
        }
    }
}

/// Worker -> coordinator, first message. The digests form the worker's fingerprint;
/// `fingerprintMismatch(expected:)` names what differs.
public struct Hello: Equatable, Sendable {
    /// SHA-256 hex of the corpus file's bytes.
    public var corpusDigest: String
    /// SHA-256 hex of the vocabulary's scalars.
    public var vocabularyDigest: String
    public var host: String
    public var pid: UInt32
    public var threads: UInt32
    /// The job's secret when it runs without CurveZMQ (`recur serve` prints it); else empty.
    public var joinToken: String
    /// To a parameter shard: the rank the worker's Welcome gave it, and that rank's ticket.
    public var rank: UInt32
    public var rankTicket: String

    public init(corpusDigest: String, vocabularyDigest: String, host: String, pid: UInt32, threads: UInt32,
                joinToken: String = "", rank: UInt32 = 0, rankTicket: String = "") {
        self.joinToken = joinToken
        self.rank = rank
        self.rankTicket = rankTicket
        self.corpusDigest = corpusDigest
        self.vocabularyDigest = vocabularyDigest
        self.host = host
        self.pid = pid
        self.threads = threads
    }
}

/// Coordinator -> worker, reply to an accepted Hello.
public struct Welcome: Equatable, Sendable {
    public var rank: UInt32
    public var workerCount: UInt32
    /// Canonical JSON of the whole training config.
    public var runConfig: String
    /// This worker's streams: `streamBegin ..< streamEnd`.
    public var streamBegin: UInt32
    public var streamEnd: UInt32
    /// The first step the worker will be asked for.
    public var step: UInt64
    /// Carried hidden state of this worker's streams (resume); empty otherwise.
    public var state: [WireTensor]
    /// Sharded parameter servers: where shard k listens; shard k owns slab elements
    /// `shardBounds[k] ..< shardBounds[k + 1]`. Both empty with one server.
    public var shardEndpoints: [String]
    public var shardBounds: [UInt64]
    /// Sharded: the secret of this rank in this assignment, which the worker's hellos to the
    /// shards carry (a shard admits a rank only with its ticket). Empty with one server.
    public var rankTicket: String

    public init(rank: UInt32, workerCount: UInt32, runConfig: String, streamBegin: UInt32,
                streamEnd: UInt32, step: UInt64, state: [WireTensor] = [],
                shardEndpoints: [String] = [], shardBounds: [UInt64] = [], rankTicket: String = "") {
        self.rankTicket = rankTicket
        self.shardEndpoints = shardEndpoints
        self.shardBounds = shardBounds
        self.rank = rank
        self.workerCount = workerCount
        self.runConfig = runConfig
        self.streamBegin = streamBegin
        self.streamEnd = streamEnd
        self.step = step
        self.state = state
    }
}

/// Coordinator -> an idle worker (`--balance on`): compute one node of the reduction tree,
/// chunks `chunkBegin ..< chunkEnd` of `step`, that a late worker holds, from `state` (the
/// node's streams' carried state at the start of the step), and push it like its own.
public struct Reissue: Equatable, Sendable {
    public var step: UInt64
    public var chunkBegin: UInt32
    public var chunkEnd: UInt32
    public var state: [WireTensor]

    public init(step: UInt64, chunkBegin: UInt32, chunkEnd: UInt32, state: [WireTensor]) {
        self.step = step
        self.chunkBegin = chunkBegin
        self.chunkEnd = chunkEnd
        self.state = state
    }

    /// The node's chunks; nil when the range is empty or reversed (a broken sender).
    public var chunks: Range<Int>? { chunkBegin < chunkEnd ? Int(chunkBegin)..<Int(chunkEnd) : nil }
}

/// Coordinator -> every worker: weights for `step`. The hot path encodes them from the
/// parameter slab with `WireCodec.encodeWeights`; this value form is for tests and tools.
public struct Weights: Equatable, Sendable {
    public var step: UInt64
    /// Zero the carried state before this step (epoch start).
    public var resetState: Bool
    /// In `ParameterLayout` order; from a shard, one tensor "slab" of its range.
    public var tensors: [WireTensor]
    /// From a shard: the slab element the "slab" tensor starts at.
    public var offset: UInt64

    public init(step: UInt64, resetState: Bool, tensors: [WireTensor], offset: UInt64 = 0) {
        self.offset = offset
        self.step = step
        self.resetState = resetState
        self.tensors = tensors
    }
}

/// Worker -> coordinator: the gradient of the summed loss over the worker's streams. The hot
/// path encodes it from the gradient slab with `WireCodec.encodeGradientPush`.
public struct GradientPush: Equatable, Sendable {
    public var step: UInt64
    public var tokenCount: UInt64
    public var lossSum: Double
    /// In `ParameterLayout` order.
    public var tensors: [WireTensor]
    /// Carried state after the step (L, n, H): h, and c for LSTM; on the last part.
    public var state: [WireTensor]
    /// This step: forward + backward + local reduction.
    public var computeSeconds: Double
    /// Previous step: decode weights + encode + send.
    public var communicateSeconds: Double
    /// Idle time between the previous push and the weights of this step.
    public var waitSeconds: Double
    /// Part `part` of `parts` (a whole push is part 0 of 1).
    public var part: UInt32
    public var parts: UInt32
    /// The reduction-tree node summed: chunks `chunkBegin ..< chunkEnd`.
    public var chunkBegin: UInt32
    public var chunkEnd: UInt32
    /// To a shard: the slab element its one tensor "slab" starts at.
    public var offset: UInt64

    public init(step: UInt64, tokenCount: UInt64, lossSum: Double, tensors: [WireTensor],
                state: [WireTensor] = [], computeSeconds: Double, communicateSeconds: Double,
                waitSeconds: Double = 0, part: UInt32 = 0, parts: UInt32 = 1, chunkBegin: UInt32 = 0, chunkEnd: UInt32 = 0,
                offset: UInt64 = 0) {
        self.offset = offset
        self.chunkBegin = chunkBegin
        self.chunkEnd = chunkEnd
        self.step = step
        self.tokenCount = tokenCount
        self.lossSum = lossSum
        self.tensors = tensors
        self.state = state
        self.computeSeconds = computeSeconds
        self.communicateSeconds = communicateSeconds
        self.waitSeconds = waitSeconds
        self.part = part
        self.parts = parts
    }
}

public struct Heartbeat: Equatable, Sendable {
    public var rank: UInt32
    public var step: UInt64

    public init(rank: UInt32, step: UInt64) {
        self.rank = rank
        self.step = step
    }
}

public struct Shutdown: Equatable, Sendable {
    public var reason: String

    public init(reason: String) { self.reason = reason }
}

/// The proto's `Error` message (renamed: `Error` is Swift's protocol).
public struct WireErrorMessage: Equatable, Sendable {
    public var message: String

    public init(message: String) { self.message = message }

    /// A server's answer to a message from a peer it does not know (it restarted, or the
    /// peer's Hello was lost): not a refusal, a request for the peer's Hello, which a worker
    /// sends at once.
    public static let helloFirst = WireErrorMessage(message: "hello first")
    public var asksForHello: Bool { self == Self.helloFirst }
}

/// Coordinator -> parameter shard, first message: the run, the shard's place, and its range's
/// weights and optimizer state as of `step` (values: sent once per run and at resume).
public struct ShardSetup: Equatable, Sendable {
    public var runConfig: String
    public var shard: UInt32
    public var shardCount: UInt32
    public var step: UInt64
    public var workerCount: UInt32
    /// "slab": the range's weights.
    public var parameters: WireTensor
    /// The range of each optimizer buffer, named as in checkpoints.
    public var optimizerState: [WireTensor]
    public var optimizerSteps: UInt64
    public var joinToken: String
    /// V: with the config it fixes the parameter table, and so the shard's range.
    public var vocabularySize: UInt32
    /// A classifier's classes (its head's rows); 0 for a language model.
    public var labelCount: UInt32

    public init(runConfig: String, shard: UInt32, shardCount: UInt32, step: UInt64, workerCount: UInt32,
                parameters: WireTensor, optimizerState: [WireTensor], optimizerSteps: UInt64, joinToken: String = "",
                vocabularySize: UInt32, labelCount: UInt32 = 0) {
        self.vocabularySize = vocabularySize
        self.labelCount = labelCount
        self.runConfig = runConfig
        self.shard = shard
        self.shardCount = shardCount
        self.step = step
        self.workerCount = workerCount
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.optimizerSteps = optimizerSteps
        self.joinToken = joinToken
    }
}

/// Coordinator -> shard.
public struct ShardCommand: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        /// Send the weights for `step` to every worker.
        case broadcast = 1
        /// Clip by `norm`, take optimizer step `step`; then broadcast step + 1 if asked.
        case apply = 2
        /// Answer with the range's weights and optimizer state.
        case sendState = 3
        /// A new assignment (a worker was lost or joined): forget the workers, wait for
        /// `workerCount` hellos, then broadcast the weights for `step`; answer `ready`.
        case reassign = 4
        /// `--balance on`: node `chunks` of rank `owner`'s block in `step` was re-issued to
        /// rank `helper`, whose pushes for it count as the owner's; answer `granted`.
        case reissue = 5
        /// `--balance on`: rank `owner` fell behind in `step` (a copy completed its node); it
        /// gets no weights until `release`.
        case holdBack = 6
        /// `--balance on`: rank `owner`, held back, caught up and is welcomed at `step`: it
        /// gets the step's weights (once it said hello).
        case release = 7
    }
    public var kind: Kind
    public var step: UInt64
    public var norm: Double
    public var broadcastNext: Bool
    /// The broadcast step starts an epoch (workers zero their carried state).
    public var resetState: Bool
    public var workerCount: UInt32
    /// `reassign`: the ticket of each rank of the new assignment, in rank order.
    public var rankTickets: [String]
    /// `reassign`: the chunks of each rank's contiguous block, in rank order (`--balance`);
    /// empty: the equal split (`StreamLayout.contiguousBlocks`).
    public var blockSizes: [UInt32]
    /// `reissue`: the node re-issued, chunks `chunkBegin..<chunkEnd`.
    public var chunkBegin: UInt32
    public var chunkEnd: UInt32
    /// `reissue`: the rank whose node it is; `holdBack`, `release`: the rank held back.
    public var owner: UInt32
    /// `reissue`: the rank that computes the copy.
    public var helper: UInt32

    public init(kind: Kind, step: UInt64, norm: Double = 0, broadcastNext: Bool = false, resetState: Bool = false,
                workerCount: UInt32 = 0, rankTickets: [String] = [], blockSizes: [UInt32] = [],
                chunkBegin: UInt32 = 0, chunkEnd: UInt32 = 0, owner: UInt32 = 0, helper: UInt32 = 0) {
        self.chunkBegin = chunkBegin
        self.chunkEnd = chunkEnd
        self.owner = owner
        self.helper = helper
        self.workerCount = workerCount
        self.rankTickets = rankTickets
        self.blockSizes = blockSizes
        self.kind = kind
        self.step = step
        self.norm = norm
        self.broadcastNext = broadcastNext
        self.resetState = resetState
    }
}

/// Shard -> coordinator.
public struct ShardReport: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case ready = 1
        /// Σg² of each of the shard's norm blocks for `step`.
        case blockSquares = 2
        case state = 3
        /// Worker `step` (its rank, in this field) said hello to the shard.
        case workerJoined = 4
        /// The shard took a `reissue` of `step` (one report per command, in order).
        case granted = 5
    }
    public var kind: Kind
    public var step: UInt64
    public var blockSquares: [Double]
    public var parameters: WireTensor?
    public var optimizerState: [WireTensor]
    public var optimizerSteps: UInt64

    public init(kind: Kind, step: UInt64, blockSquares: [Double] = [], parameters: WireTensor? = nil,
                optimizerState: [WireTensor] = [], optimizerSteps: UInt64 = 0) {
        self.kind = kind
        self.step = step
        self.blockSquares = blockSquares
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.optimizerSteps = optimizerSteps
    }
}

/// One Envelope body.
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    case weights(Weights)
    case gradientPush(GradientPush)
    case heartbeat(Heartbeat)
    case shutdown(Shutdown)
    case error(WireErrorMessage)
    case shardSetup(ShardSetup)
    case shardCommand(ShardCommand)
    case shardReport(ShardReport)
    case reissue(Reissue)

    public var kind: MessageKind {
        switch self {
        case .hello: return .hello
        case .welcome: return .welcome
        case .weights: return .weights
        case .gradientPush: return .gradientPush
        case .heartbeat: return .heartbeat
        case .shutdown: return .shutdown
        case .error: return .error
        case .shardSetup: return .shardSetup
        case .shardCommand: return .shardCommand
        case .shardReport: return .shardReport
        case .reissue: return .reissue
        }
    }
}

extension Hello {
    /// The fingerprint fields that differ from the coordinator's `expected` hello, as
    /// `WireError.fingerprintMismatch` lists them; nil when the worker may join.
    public func fingerprintMismatch(expected: Hello) -> WireError? {
        var differences: [String] = []
        if corpusDigest != expected.corpusDigest {
            differences.append("corpus_digest \(corpusDigest.prefix(12)) (coordinator \(expected.corpusDigest.prefix(12)))")
        }
        if vocabularyDigest != expected.vocabularyDigest {
            differences.append("vocabulary_digest \(vocabularyDigest.prefix(12)) (coordinator \(expected.vocabularyDigest.prefix(12)))")
        }
        return differences.isEmpty ? nil : .fingerprintMismatch(differences: differences)
    }
}
