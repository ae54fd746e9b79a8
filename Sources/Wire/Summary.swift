// One-line descriptions for logs (ps-lite's DebugString): type, step, tensor count and bytes,
// never tensor values. A value message and its decoded form print the same line.

extension Message: CustomStringConvertible {
    public var description: String { summary }

    public var summary: String {
        switch self {
        case .hello(let hello): return hello.summary
        case .welcome(let welcome): return welcome.summary
        case .weights(let weights): return weights.summary
        case .gradientPush(let push): return push.summary
        case .heartbeat(let heartbeat): return heartbeat.summary
        case .shutdown(let shutdown): return shutdown.summary
        case .error(let error): return error.summary
        case .shardSetup(let setup): return setup.summary
        case .shardCommand(let command): return command.summary
        case .shardReport(let report): return report.summary
        case .reissue(let reissue): return reissue.summary
        }
    }
}

extension DecodedMessage: CustomStringConvertible {
    public var description: String { summary }

    public var summary: String {
        switch self {
        case .hello(let hello): return hello.summary
        case .welcome(let welcome): return welcome.summary
        case .weights(let weights): return weights.summary
        case .gradientPush(let push): return push.summary
        case .heartbeat(let heartbeat): return heartbeat.summary
        case .shutdown(let shutdown): return shutdown.summary
        case .error(let error): return error.summary
        case .shardSetup(let setup): return setup.summary
        case .shardCommand(let command): return command.summary
        case .shardReport(let report): return report.summary
        case .reissue(let reissue): return reissue.summary
        }
    }
}

extension Hello: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        "hello: host \(host) pid \(pid) threads \(threads), corpus \(corpusDigest.prefix(12)), "
            + "vocabulary \(vocabularyDigest.prefix(12))" + (joinToken.isEmpty ? "" : ", join token given")
    }
}

extension Welcome: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        "welcome: rank \(rank) of \(workerCount), streams \(streamBegin)..<\(streamEnd), step \(step)"
            + stateText(count: state.count, byteCount: totalByteCount(state))
    }
}

extension Weights: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        weightsSummary(step: step, resetState: resetState,
                       tensorCount: tensors.count, byteCount: totalByteCount(tensors))
    }
}

extension DecodedWeights: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        weightsSummary(step: step, resetState: resetState,
                       tensorCount: tensors.count, byteCount: tensors.byteCount)
    }
}

extension GradientPush: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        gradientPushSummary(step: step, tokenCount: tokenCount, lossSum: lossSum,
                            tensorCount: tensors.count, byteCount: totalByteCount(tensors), state: state,
                            computeSeconds: computeSeconds, communicateSeconds: communicateSeconds)
    }
}

extension DecodedGradientPush: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String {
        gradientPushSummary(step: step, tokenCount: tokenCount, lossSum: lossSum,
                            tensorCount: tensors.count, byteCount: tensors.byteCount, state: state,
                            computeSeconds: computeSeconds, communicateSeconds: communicateSeconds)
    }
}

extension Reissue: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String { "reissue: step \(step) chunks \(chunkBegin)..<\(chunkEnd), \(state.count) state tensor(s)" }
}

extension Heartbeat: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String { "heartbeat: rank \(rank) step \(step)" }
}

extension Shutdown: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String { "shutdown: \(reason)" }
}

extension WireErrorMessage: CustomStringConvertible {
    public var description: String { summary }
    public var summary: String { "error: \(message)" }
}

private func weightsSummary(step: UInt64, resetState: Bool,
                            tensorCount: Int, byteCount: Int) -> String {
    var text = "weights step \(step): \(tensorCount) tensors (\(byteText(byteCount)))"
    if resetState { text += ", reset_state" }
    return text
}

private func gradientPushSummary(step: UInt64, tokenCount: UInt64, lossSum: Double, tensorCount: Int,
                                 byteCount: Int, state: [WireTensor], computeSeconds: Double,
                                 communicateSeconds: Double) -> String {
    "gradient_push step \(step): \(tensorCount) tensors (\(byteText(byteCount))), \(tokenCount) tokens, "
        + "loss_sum \(lossSum), compute \(computeSeconds) s, communicate \(communicateSeconds) s"
        + stateText(count: state.count, byteCount: totalByteCount(state))
}

private func stateText(count: Int, byteCount: Int) -> String {
    count == 0 ? "" : ", \(count) state tensors (\(byteText(byteCount)))"
}

private func totalByteCount(_ tensors: [WireTensor]) -> Int {
    tensors.reduce(0) { $0 + $1.values.count * MemoryLayout<Float>.size }
}

/// `512 B`, `16.0 KiB`, `3.1 MiB`: one decimal, binary units.
func byteText(_ byteCount: Int) -> String {
    if byteCount < 1024 { return "\(byteCount) B" }
    let units = ["KiB", "MiB", "GiB"]
    var unit = 0
    var scale = 1024
    while unit < units.count - 1 && byteCount >= scale * 1024 {
        scale *= 1024
        unit += 1
    }
    let tenths = (byteCount * 10 + scale / 2) / scale
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
}

extension ShardSetup {
    public var summary: String {
        "shard_setup: shard \(shard) of \(shardCount), step \(step), \(workerCount) worker(s), "
            + "\(parameters.values.count) parameters, \(optimizerState.count) optimizer buffer(s)"
    }
}

extension ShardCommand {
    public var summary: String {
        switch kind {
        case .reissue: return "shard_command: reissue step \(step), chunks \(chunkBegin)..<\(chunkEnd) of rank \(owner) to rank \(helper)"
        case .holdBack: return "shard_command: holdBack step \(step), rank \(owner)"
        case .release: return "shard_command: release step \(step), rank \(owner)"
        default: return "shard_command: \(kind) step \(step)"
        }
    }
}

extension ShardReport {
    public var summary: String {
        "shard_report: \(kind) step \(step), \(blockSquares.count) block(s)"
            + (parameters.map { ", \($0.values.count) parameters" } ?? "")
    }
}
