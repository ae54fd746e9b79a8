import CWire
import Recurrent

/// The Swift face of proto/recur.proto: one packer per message type (below), one decoder
/// (`Decoder.swift`). The public entry points only choose where tensor bytes come from, a
/// `[WireTensor]` or a parameter slab; both reach the same packer.
public enum WireCodec {
    /// Carried by every envelope; a peer with another version is refused.
    public static let protocolVersion: UInt32 = 6

    /// Encodes `message` into `buffer`, replacing its contents.
    public static func encode(_ message: Message, into buffer: inout MessageBuffer) {
        switch message {
        case .hello(let hello):
            packHello(hello, into: &buffer)
        case .welcome(let welcome):
            withTensorViews(welcome.state) { packWelcome(welcome, state: $0, into: &buffer) }
        case .weights(let weights):
            withTensorViews(weights.tensors) { tensors in
                packWeights(step: weights.step, resetState: weights.resetState, offset: weights.offset,
                            tensors: tensors, into: &buffer)
            }
        case .gradientPush(let push):
            withTensorViews(push.tensors) { tensors in
                withTensorViews(push.state) { state in
                    packGradientPush(push, tensors: tensors, state: state, into: &buffer)
                }
            }
        case .heartbeat(let heartbeat):
            packHeartbeat(heartbeat, into: &buffer)
        case .shutdown(let shutdown):
            packShutdown(shutdown, into: &buffer)
        case .error(let error):
            packError(error, into: &buffer)
        case .shardSetup(let setup):
            packShardSetup(setup, into: &buffer)
        case .shardCommand(let command):
            packShardCommand(command, into: &buffer)
        case .shardReport(let report):
            packShardReport(report, into: &buffer)
        case .reissue(let reissue):
            withTensorViews(reissue.state) { packReissue(reissue, state: $0, into: &buffer) }
        }
    }

    /// A freshly allocated encoding (tests and tools; loops keep a `MessageBuffer`).
    public static func encode(_ message: Message) -> [UInt8] {
        var buffer = MessageBuffer()
        encode(message, into: &buffer)
        return buffer.bytes
    }

    /// Weights for `step` straight from the parameter slab: one tensor per slice of `layout`,
    /// in layout order, bytes packed from `parameters` in place (no copy before packing).
    /// `parameters.count` must equal `layout.count`.
    public static func encodeWeights(step: UInt64, resetState: Bool,
                                     parameters: UnsafeBufferPointer<Float>, layout: ParameterLayout,
                                     into buffer: inout MessageBuffer) {
        packWeights(step: step, resetState: resetState, offset: 0,
                    tensors: tensorViews(layout: layout, values: parameters), into: &buffer)
    }

    /// A shard's weights for `step`: one tensor "slab" holding `values`, slab elements from
    /// `offset` on.
    public static func encodeSlabWeights(step: UInt64, resetState: Bool, offset: Int,
                                         values: UnsafeBufferPointer<Float>, into buffer: inout MessageBuffer) {
        packWeights(step: step, resetState: resetState, offset: UInt64(offset),
                    tensors: [slabView(values)], into: &buffer)
    }

    /// One node's gradient for one shard: the range `offset ..< offset + values.count` of the
    /// node's sum as one tensor "slab" (no loss, no state: those go to the coordinator).
    public static func encodeSlabGradientPush(step: UInt64, tokenCount: UInt64, chunks: Range<Int>, offset: Int,
                                              values: UnsafeBufferPointer<Float>, part: Int = 0, parts: Int = 1,
                                              into buffer: inout MessageBuffer) {
        let header = GradientPush(step: step, tokenCount: tokenCount, lossSum: 0, tensors: [], computeSeconds: 0,
                                  communicateSeconds: 0, part: UInt32(part), parts: UInt32(parts), chunkBegin: UInt32(chunks.lowerBound),
                                  chunkEnd: UInt32(chunks.upperBound), offset: UInt64(offset))
        packGradientPush(header, tensors: [slabView(values)], state: [], into: &buffer)
    }

    private static func slabView(_ values: UnsafeBufferPointer<Float>) -> TensorView {
        TensorView(name: "slab", shape: [values.count], bytes: UnsafeRawBufferPointer(values))
    }

    /// A gradient push straight from the gradient slab (laid out as `layout`, summed over the
    /// worker's streams). `state` is the carried hidden state, only when the weights asked.
    /// With `slices`, the message is part `part` of `parts` and carries only that run of the
    /// table.
    public static func encodeGradientPush(step: UInt64, tokenCount: UInt64, lossSum: Double,
                                          computeSeconds: Double, communicateSeconds: Double, waitSeconds: Double = 0,
                                          slices: Range<Int>? = nil, part: Int = 0, parts: Int = 1,
                                          chunks: Range<Int>,
                                          gradient: UnsafeBufferPointer<Float>, layout: ParameterLayout,
                                          state: [WireTensor] = [], into buffer: inout MessageBuffer) {
        let header = GradientPush(step: step, tokenCount: tokenCount, lossSum: lossSum, tensors: [],
                                  state: [], computeSeconds: computeSeconds,
                                  communicateSeconds: communicateSeconds, waitSeconds: waitSeconds,
                                  part: UInt32(part), parts: UInt32(parts),
                                  chunkBegin: UInt32(chunks.lowerBound), chunkEnd: UInt32(chunks.upperBound))
        withTensorViews(state) { stateViews in
            let views = tensorViews(layout: layout, values: gradient)
            packGradientPush(header, tensors: Array(views[slices ?? views.indices]),
                             state: stateViews, into: &buffer)
        }
    }

    // MARK: The packers: the one place each message's fields meet the C structs.

    private static func packHello(_ hello: Hello, into buffer: inout MessageBuffer) {
        withCStrings([hello.corpusDigest, hello.vocabularyDigest, hello.host, hello.joinToken, hello.rankTicket]) { s in
            var body = Recur__Hello()
            recur__hello__init(&body)
            body.rank = hello.rank
            body.rank_ticket = s[4]
            body.corpus_digest = s[0]
            body.vocabulary_digest = s[1]
            body.host = s[2]
            body.join_token = s[3]
            body.pid = hello.pid
            body.threads = hello.threads
            withUnsafeMutablePointer(to: &body) { p in
                packEnvelope(RECUR__ENVELOPE__BODY_HELLO, into: &buffer) { $0.hello = p }
            }
        }
    }

    private static func packWelcome(_ welcome: Welcome, state: [TensorView],
                                    into buffer: inout MessageBuffer) {
        withCStrings([welcome.runConfig, welcome.rankTicket] + welcome.shardEndpoints) { s in
            var endpoints: [UnsafeMutablePointer<CChar>?] = Array(s.dropFirst(2))
            var bounds = welcome.shardBounds
            withCTensors(state) { stateCount, stateTensors in
                endpoints.withUnsafeMutableBufferPointer { endpoints in
                    bounds.withUnsafeMutableBufferPointer { bounds in
                        var body = Recur__Welcome()
                        recur__welcome__init(&body)
                        body.rank = welcome.rank
                        body.worker_count = welcome.workerCount
                        body.run_config = s[0]
                        body.rank_ticket = s[1]
                        body.stream_begin = welcome.streamBegin
                        body.stream_end = welcome.streamEnd
                        body.step = welcome.step
                        body.n_state = stateCount
                        body.state = stateTensors
                        body.n_shard_endpoints = endpoints.count
                        body.shard_endpoints = endpoints.baseAddress
                        body.n_shard_bounds = bounds.count
                        body.shard_bounds = bounds.baseAddress
                        withUnsafeMutablePointer(to: &body) { p in
                            packEnvelope(RECUR__ENVELOPE__BODY_WELCOME, into: &buffer) { $0.welcome = p }
                        }
                    }
                }
            }
        }
    }

    private static func packWeights(step: UInt64, resetState: Bool, offset: UInt64,
                                    tensors: [TensorView], into buffer: inout MessageBuffer) {
        withCTensors(tensors) { tensorCount, cTensors in
            var body = Recur__Weights()
            recur__weights__init(&body)
            body.step = step
            body.offset = offset
            body.reset_state = resetState ? 1 : 0
            body.n_tensors = tensorCount
            body.tensors = cTensors
            withUnsafeMutablePointer(to: &body) { p in
                packEnvelope(RECUR__ENVELOPE__BODY_WEIGHTS, into: &buffer) { $0.weights = p }
            }
        }
    }

    /// Takes the scalar fields from `push`; tensors and state from the views.
    private static func packGradientPush(_ push: GradientPush, tensors: [TensorView],
                                         state: [TensorView], into buffer: inout MessageBuffer) {
        withCTensors(tensors) { tensorCount, cTensors in
            withCTensors(state) { stateCount, stateTensors in
                var body = Recur__GradientPush()
                recur__gradient_push__init(&body)
                body.step = push.step
                body.token_count = push.tokenCount
                body.loss_sum = push.lossSum
                body.n_tensors = tensorCount
                body.tensors = cTensors
                body.n_state = stateCount
                body.state = stateTensors
                body.compute_seconds = push.computeSeconds
                body.communicate_seconds = push.communicateSeconds
                body.wait_seconds = push.waitSeconds
                body.part = push.part
                body.parts = push.parts
                body.chunk_begin = push.chunkBegin
                body.chunk_end = push.chunkEnd
                body.offset = push.offset
                withUnsafeMutablePointer(to: &body) { p in
                    packEnvelope(RECUR__ENVELOPE__BODY_GRADIENT_PUSH, into: &buffer) { $0.gradient_push = p }
                }
            }
        }
    }

    private static func packReissue(_ reissue: Reissue, state: [TensorView], into buffer: inout MessageBuffer) {
        withCTensors(state) { stateCount, stateTensors in
            var body = Recur__Reissue()
            recur__reissue__init(&body)
            body.step = reissue.step
            body.chunk_begin = reissue.chunkBegin
            body.chunk_end = reissue.chunkEnd
            body.n_state = stateCount
            body.state = stateTensors
            withUnsafeMutablePointer(to: &body) { p in
                packEnvelope(RECUR__ENVELOPE__BODY_REISSUE, into: &buffer) { $0.reissue = p }
            }
        }
    }

    private static func packHeartbeat(_ heartbeat: Heartbeat, into buffer: inout MessageBuffer) {
        var body = Recur__Heartbeat()
        recur__heartbeat__init(&body)
        body.rank = heartbeat.rank
        body.step = heartbeat.step
        withUnsafeMutablePointer(to: &body) { p in
            packEnvelope(RECUR__ENVELOPE__BODY_HEARTBEAT, into: &buffer) { $0.heartbeat = p }
        }
    }

    private static func packShutdown(_ shutdown: Shutdown, into buffer: inout MessageBuffer) {
        withCStrings([shutdown.reason]) { s in
            var body = Recur__Shutdown()
            recur__shutdown__init(&body)
            body.reason = s[0]
            withUnsafeMutablePointer(to: &body) { p in
                packEnvelope(RECUR__ENVELOPE__BODY_SHUTDOWN, into: &buffer) { $0.shutdown = p }
            }
        }
    }

    private static func packError(_ error: WireErrorMessage, into buffer: inout MessageBuffer) {
        withCStrings([error.message]) { s in
            var body = Recur__Error()
            recur__error__init(&body)
            body.message = s[0]
            withUnsafeMutablePointer(to: &body) { p in
                packEnvelope(RECUR__ENVELOPE__BODY_ERROR, into: &buffer) { $0.error = p }
            }
        }
    }

    private static func packShardSetup(_ setup: ShardSetup, into buffer: inout MessageBuffer) {
        withCStrings([setup.runConfig, setup.joinToken]) { s in
            withTensorViews([setup.parameters] + setup.optimizerState) { views in
                withCTensors(views) { _, tensors in
                    var body = Recur__ShardSetup()
                    recur__shard_setup__init(&body)
                    body.run_config = s[0]
                    body.join_token = s[1]
                    body.shard = setup.shard
                    body.shard_count = setup.shardCount
                    body.step = setup.step
                    body.worker_count = setup.workerCount
                    body.parameters = tensors![0]
                    body.n_optimizer_state = views.count - 1
                    body.optimizer_state = views.count > 1 ? tensors! + 1 : nil
                    body.optimizer_steps = setup.optimizerSteps
                    body.vocabulary_size = setup.vocabularySize
                    body.label_count = setup.labelCount
                    withUnsafeMutablePointer(to: &body) { p in
                        packEnvelope(RECUR__ENVELOPE__BODY_SHARD_SETUP, into: &buffer) { $0.shard_setup = p }
                    }
                }
            }
        }
    }

    private static func packShardCommand(_ command: ShardCommand, into buffer: inout MessageBuffer) {
        var body = Recur__ShardCommand()
        recur__shard_command__init(&body)
        body.kind = command.kind.rawValue
        body.step = command.step
        body.norm = command.norm
        body.broadcast_next = command.broadcastNext ? 1 : 0
        body.reset_state = command.resetState ? 1 : 0
        body.worker_count = command.workerCount
        body.chunk_begin = command.chunkBegin
        body.chunk_end = command.chunkEnd
        body.owner = command.owner
        body.helper = command.helper
        var sizes = command.blockSizes
        withCStrings(command.rankTickets) { s in
            var tickets: [UnsafeMutablePointer<CChar>?] = s
            tickets.withUnsafeMutableBufferPointer { tickets in
                body.n_rank_tickets = tickets.count
                body.rank_tickets = tickets.baseAddress
                sizes.withUnsafeMutableBufferPointer { sizes in
                    body.n_block_sizes = sizes.count
                    body.block_sizes = sizes.baseAddress
                    withUnsafeMutablePointer(to: &body) { p in
                        packEnvelope(RECUR__ENVELOPE__BODY_SHARD_COMMAND, into: &buffer) { $0.shard_command = p }
                    }
                }
            }
        }
    }

    private static func packShardReport(_ report: ShardReport, into buffer: inout MessageBuffer) {
        let tensors = (report.parameters.map { [$0] } ?? []) + report.optimizerState
        withTensorViews(tensors) { views in
            withCTensors(views) { _, cTensors in
                var squares = report.blockSquares
                squares.withUnsafeMutableBufferPointer { squares in
                    var body = Recur__ShardReport()
                    recur__shard_report__init(&body)
                    body.kind = report.kind.rawValue
                    body.step = report.step
                    body.n_block_squares = squares.count
                    body.block_squares = squares.baseAddress
                    let first = report.parameters == nil ? 0 : 1
                    if first == 1 { body.parameters = cTensors![0] }
                    body.n_optimizer_state = views.count - first
                    body.optimizer_state = views.count > first ? cTensors! + first : nil
                    body.optimizer_steps = report.optimizerSteps
                    withUnsafeMutablePointer(to: &body) { p in
                        packEnvelope(RECUR__ENVELOPE__BODY_SHARD_REPORT, into: &buffer) { $0.shard_report = p }
                    }
                }
            }
        }
    }

    /// Wraps a body (set by `setBody`, pointing at memory live for this call) in a versioned
    /// envelope and packs it into `buffer`.
    private static func packEnvelope(_ bodyCase: Recur__Envelope__BodyCase, into buffer: inout MessageBuffer,
                                     setBody: (inout Recur__Envelope) -> Void) {
        var envelope = Recur__Envelope()
        recur__envelope__init(&envelope)
        envelope.version = protocolVersion
        envelope.body_case = bodyCase
        setBody(&envelope)
        let size = recur__envelope__get_packed_size(&envelope)
        buffer.overwrite(byteCount: size) { recur__envelope__pack(&envelope, $0) }
    }
}
