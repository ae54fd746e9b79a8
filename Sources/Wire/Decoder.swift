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
        let envelope = unpacked.pointee
        guard envelope.version == protocolVersion else {
            throw WireError.versionMismatch(received: envelope.version, expected: protocolVersion)
        }
        switch envelope.body_case {
        case RECUR__ENVELOPE__BODY_HELLO:
            let body = envelope.hello.pointee
            return .hello(Hello(corpusDigest: string(body.corpus_digest),
                                vocabularyDigest: string(body.vocabulary_digest),
                                host: string(body.host),
                                pid: body.pid, threads: body.threads))
        case RECUR__ENVELOPE__BODY_WELCOME:
            let body = envelope.welcome.pointee
            let state = try DecodedTensorList(owner: owner, count: body.n_state, tensors: body.state, limits: limits)
            return .welcome(Welcome(rank: body.rank, workerCount: body.worker_count,
                                    runConfig: string(body.run_config), streamBegin: body.stream_begin,
                                    streamEnd: body.stream_end, step: body.step,
                                    state: state.wireTensors()))
        case RECUR__ENVELOPE__BODY_WEIGHTS:
            let body = envelope.weights.pointee
            let tensors = try DecodedTensorList(owner: owner, count: body.n_tensors, tensors: body.tensors, limits: limits)
            return .weights(DecodedWeights(step: body.step, resetState: body.reset_state != 0,
                                           tensors: tensors))
        case RECUR__ENVELOPE__BODY_GRADIENT_PUSH:
            let body = envelope.gradient_push.pointee
            let tensors = try DecodedTensorList(owner: owner, count: body.n_tensors, tensors: body.tensors, limits: limits)
            let state = try DecodedTensorList(owner: owner, count: body.n_state, tensors: body.state, limits: limits)
            return .gradientPush(DecodedGradientPush(
                step: body.step, tokenCount: body.token_count, lossSum: body.loss_sum,
                computeSeconds: body.compute_seconds, communicateSeconds: body.communicate_seconds,
                waitSeconds: body.wait_seconds, part: body.part, parts: max(body.parts, 1),
                tensors: tensors, state: state.wireTensors()))
        case RECUR__ENVELOPE__BODY_HEARTBEAT:
            let body = envelope.heartbeat.pointee
            return .heartbeat(Heartbeat(rank: body.rank, step: body.step))
        case RECUR__ENVELOPE__BODY_SHUTDOWN:
            return .shutdown(Shutdown(reason: string(envelope.shutdown.pointee.reason)))
        case RECUR__ENVELOPE__BODY_ERROR:
            return .error(WireErrorMessage(message: string(envelope.error.pointee.message)))
        default:
            throw WireError.missingBody
        }
    }

    /// `decode` of an array (tests and tools).
    public static func decode(_ bytes: [UInt8], limits: DecodeLimits) throws -> DecodedMessage {
        try bytes.withUnsafeBytes { try decode($0, limits: limits) }
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
