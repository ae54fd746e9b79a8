import CWire

extension WireCodec {
    /// The one decoder: parses one Envelope and checks everything that does not need the
    /// receiver's model: size, version, body, and for every tensor a positive shape within
    /// `limits` whose product × 4 equals its byte count. The result owns its own copy of the
    /// data (protobuf-c copies), so `bytes` may be reused as soon as this returns.
    ///
    /// Weights and gradients stay in the unpacked C message; copy them into a slab with
    /// `copyTensors(into:layout:)`, which checks them against the parameter table.
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws -> DecodedMessage {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw WireError.emptyMessage }
        guard bytes.count <= limits.maxMessageBytes else {
            throw WireError.messageTooLarge(byteCount: bytes.count, limit: limits.maxMessageBytes)
        }
        guard let unpacked = recur__envelope__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw WireError.malformed(byteCount: bytes.count)
        }
        let owner = UnpackedEnvelope(unpacked)
        try withUnsafePointer(to: recur__envelope__descriptor) { descriptor in
            try rejectNULInStrings(UnsafeRawBufferPointer(start: base, count: bytes.count), message: descriptor)
        }
        let envelope = unpacked.pointee
        guard envelope.version == protocolVersion else {
            throw WireError.versionMismatch(received: envelope.version, expected: protocolVersion)
        }
        switch envelope.body_case {
        case RECUR__ENVELOPE__BODY_HELLO:
            let body = envelope.hello.pointee
            return .hello(Hello(corpusDigest: string(body.corpus_digest),
                                vocabularyDigest: string(body.vocabulary_digest),
                                host: PeerText.clean(string(body.host)),
                                pid: body.pid, threads: body.threads, joinToken: string(body.join_token),
                                rank: body.rank, rankTicket: string(body.rank_ticket)))
        case RECUR__ENVELOPE__BODY_WELCOME:
            let body = envelope.welcome.pointee
            let state = try DecodedTensorList(owner: owner, count: body.n_state, tensors: body.state, limits: limits)
            return .welcome(Welcome(rank: body.rank, workerCount: body.worker_count,
                                    runConfig: string(body.run_config), streamBegin: body.stream_begin,
                                    streamEnd: body.stream_end, step: body.step,
                                    state: state.wireTensors(),
                                    shardEndpoints: (0..<body.n_shard_endpoints).map { string(body.shard_endpoints[$0]) },
                                    shardBounds: Array(UnsafeBufferPointer(start: body.shard_bounds, count: body.n_shard_bounds)),
                                    rankTicket: string(body.rank_ticket)))
        case RECUR__ENVELOPE__BODY_WEIGHTS:
            let body = envelope.weights.pointee
            let tensors = try DecodedTensorList(owner: owner, count: body.n_tensors, tensors: body.tensors, limits: limits)
            return .weights(DecodedWeights(step: body.step, resetState: body.reset_state != 0,
                                           tensors: tensors, offset: body.offset))
        case RECUR__ENVELOPE__BODY_GRADIENT_PUSH:
            let body = envelope.gradient_push.pointee
            let tensors = try DecodedTensorList(owner: owner, count: body.n_tensors, tensors: body.tensors, limits: limits)
            let state = try DecodedTensorList(owner: owner, count: body.n_state, tensors: body.state, limits: limits)
            return .gradientPush(DecodedGradientPush(
                step: body.step, tokenCount: body.token_count, lossSum: body.loss_sum,
                computeSeconds: body.compute_seconds, communicateSeconds: body.communicate_seconds,
                waitSeconds: body.wait_seconds, part: body.part, parts: max(body.parts, 1),
                chunkBegin: body.chunk_begin, chunkEnd: body.chunk_end, offset: body.offset,
                tensors: tensors, state: state.wireTensors()))
        case RECUR__ENVELOPE__BODY_REISSUE:
            let body = envelope.reissue.pointee
            let state = try DecodedTensorList(owner: owner, count: body.n_state, tensors: body.state, limits: limits)
            return .reissue(Reissue(step: body.step, chunkBegin: body.chunk_begin, chunkEnd: body.chunk_end, state: state.wireTensors()))
        case RECUR__ENVELOPE__BODY_HEARTBEAT:
            let body = envelope.heartbeat.pointee
            return .heartbeat(Heartbeat(rank: body.rank, step: body.step))
        case RECUR__ENVELOPE__BODY_SHUTDOWN:
            return .shutdown(Shutdown(reason: PeerText.clean(string(envelope.shutdown.pointee.reason))))
        case RECUR__ENVELOPE__BODY_ERROR:
            return .error(WireErrorMessage(message: PeerText.clean(string(envelope.error.pointee.message))))
        case RECUR__ENVELOPE__BODY_SHARD_SETUP:
            let body = envelope.shard_setup.pointee
            guard let parameters = try tensorValues(owner: owner, body.parameters, limits: limits) else {
                throw WireError.missingField("shard_setup.parameters")
            }
            let state = try DecodedTensorList(owner: owner, count: body.n_optimizer_state, tensors: body.optimizer_state, limits: limits)
            return .shardSetup(ShardSetup(runConfig: string(body.run_config), shard: body.shard, shardCount: body.shard_count,
                                          step: body.step, workerCount: body.worker_count, parameters: parameters,
                                          optimizerState: state.wireTensors(), optimizerSteps: body.optimizer_steps,
                                          joinToken: string(body.join_token), vocabularySize: body.vocabulary_size, labelCount: body.label_count))
        case RECUR__ENVELOPE__BODY_SHARD_COMMAND:
            let body = envelope.shard_command.pointee
            guard let kind = ShardCommand.Kind(rawValue: body.kind) else { throw WireError.unknownKind(field: "shard_command.kind", value: body.kind) }
            return .shardCommand(ShardCommand(kind: kind, step: body.step, norm: body.norm,
                                              broadcastNext: body.broadcast_next != 0, resetState: body.reset_state != 0,
                                              workerCount: body.worker_count,
                                              rankTickets: (0..<body.n_rank_tickets).map { string(body.rank_tickets[$0]) },
                                              blockSizes: Array(UnsafeBufferPointer(start: body.block_sizes, count: body.n_block_sizes)),
                                              chunkBegin: body.chunk_begin, chunkEnd: body.chunk_end, owner: body.owner, helper: body.helper))
        case RECUR__ENVELOPE__BODY_SHARD_REPORT:
            let body = envelope.shard_report.pointee
            guard let kind = ShardReport.Kind(rawValue: body.kind) else { throw WireError.unknownKind(field: "shard_report.kind", value: body.kind) }
            let state = try DecodedTensorList(owner: owner, count: body.n_optimizer_state, tensors: body.optimizer_state, limits: limits)
            return .shardReport(ShardReport(kind: kind, step: body.step,
                                            blockSquares: Array(UnsafeBufferPointer(start: body.block_squares, count: body.n_block_squares)),
                                            parameters: try tensorValues(owner: owner, body.parameters, limits: limits),
                                            optimizerState: state.wireTensors(), optimizerSteps: body.optimizer_steps))
        default:
            throw WireError.missingBody
        }
    }

    /// `decode` of an array (tests and tools).
    public static func decode(_ bytes: [UInt8], limits: DecodeLimits) throws -> DecodedMessage {
        try bytes.withUnsafeBytes { try decode($0, limits: limits) }
    }

    /// protobuf-c hands strings out as NUL-terminated `char *`: "rnn.weight_ih_l0\0x" would read
    /// as "rnn.weight_ih_l0" and pass the name check. So every string field of the raw bytes
    /// (found through the generated descriptors, nested messages included) must be free of NUL.
    /// Runs after a successful unpack, so the structure is known to be sound; the bounds are
    /// still checked. Throws `WireError.nulInString` naming the field.
    static func rejectNULInStrings(_ bytes: UnsafeRawBufferPointer,
                                   message: UnsafePointer<ProtobufCMessageDescriptor>) throws {
        let descriptor = message.pointee
        var position = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard position < bytes.count else { throw WireError.malformed(byteCount: bytes.count) }
                let byte = bytes[position]
                position += 1
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte < 0x80 { return value }
            }
            throw WireError.malformed(byteCount: bytes.count)
        }
        func skip(_ count: UInt64) throws {
            guard count <= UInt64(bytes.count - position) else { throw WireError.malformed(byteCount: bytes.count) }
            position += Int(count)
        }
        while position < bytes.count {
            let key = try varint()
            switch key & 7 {
            case 0: _ = try varint()
            case 1: try skip(8)
            case 5: try skip(4)
            case 2:
                let length = try varint()
                let start = position
                try skip(length)
                guard let field = (0..<Int(descriptor.n_fields)).lazy.map({ descriptor.fields[$0] })
                        .first(where: { UInt64($0.id) == key >> 3 }) else { continue }   // unknown field
                let value = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                if field.type == PROTOBUF_C_TYPE_STRING, value.contains(0) {
                    throw WireError.nulInString(field: String(cString: descriptor.short_name) + "." + String(cString: field.name))
                }
                if field.type == PROTOBUF_C_TYPE_MESSAGE, let nested = field.descriptor {
                    try rejectNULInStrings(value, message: nested.assumingMemoryBound(to: ProtobufCMessageDescriptor.self))
                }
            default:
                throw WireError.malformed(byteCount: bytes.count)
            }
        }
    }

    /// An optional single Tensor field, checked like a list's, as a value; nil when unset.
    private static func tensorValues(owner: UnpackedEnvelope, _ tensor: UnsafeMutablePointer<Recur__Tensor>?,
                                     limits: DecodeLimits) throws -> WireTensor? {
        guard tensor != nil else { return nil }
        var pointer = tensor
        return try withUnsafeMutablePointer(to: &pointer) { list in
            try DecodedTensorList(owner: owner, count: 1, tensors: list, limits: limits).wireTensors()[0]
        }
    }

    /// protobuf-c gives unset strings as "" (never NULL); NULL is mapped to "" all the same.
    private static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }
}

/// Owns one envelope unpacked by protobuf-c and frees it exactly once, when the last decoded
/// value that points into it goes away. Never mutated after unpacking, hence Sendable.
final class UnpackedEnvelope: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Recur__Envelope>

    init(_ pointer: UnsafeMutablePointer<Recur__Envelope>) { self.pointer = pointer }

    deinit { recur__envelope__free_unpacked(pointer, nil) }
}
