import Recurrent
import Training
import Wire

/// Why a gradient push (or one part of it) was refused. The push is dropped; the worker may
/// still send a correct one for the step.
public enum PushRejection: Error, Equatable, CustomStringConvertible {
    /// For another step than the one being gathered (`WireError.unexpectedStep`).
    case wrongStep(WireError)
    case duplicate(step: UInt64)
    /// For a node of the reduction tree the worker does not hold.
    case notItsChunks(begin: UInt32, end: UInt32)
    case badPartNumber(part: UInt32, parts: UInt32, tableCount: Int)
    case partCountChanged(parts: UInt32, earlier: UInt32)
    case duplicatePart(part: UInt32, parts: UInt32, step: UInt64)
    case noTensorsOfThisModel
    case repeatsTensors(step: UInt64)
    case tokenCount(received: UInt64, expected: Int)
    case lossNotFinite
    case gradientNotFinite(tensor: String)
    case badState(String)
    /// The tensors do not match the parameter table (name, shape, size).
    case tensors(WireError)
    /// All parts arrived but they left tensors out; every part of the step was dropped.
    case incomplete(step: UInt64)

    /// A part (or whole push) already received: from a second copy of a re-issued node, the
    /// same values again.
    var isRepeat: Bool {
        switch self {
        case .duplicate, .duplicatePart, .repeatsTensors: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .wrongStep(let e):
            guard case .unexpectedStep(_, let received, let expected) = e else { return "\(e)" }
            return (received < expected ? "stale gradient for step " : "gradient for future step ")
                + "\(oneBased(received)), expected step \(oneBased(expected))"
        case .duplicate(let s): return "duplicate gradient for step \(s + 1)"
        case .notItsChunks(let b, let e): return "gradient for chunks \(b)..<\(e), which this worker does not hold"
        case .badPartNumber(let p, let n, let c): return "gradient part \(p) of \(n) for a table of \(c) tensors"
        case .partCountChanged(let n, let e): return "gradient in \(n) parts after a part of \(e)"
        case .duplicatePart(let p, let n, let s): return "duplicate gradient part \(p + 1) of \(n) for step \(s + 1)"
        case .noTensorsOfThisModel: return "gradient part without tensors of this model"
        case .repeatsTensors(let s): return "gradient part repeats tensors already received for step \(s + 1)"
        case .tokenCount(let r, let e): return "gradient over \(r) tokens, expected \(e)"
        case .lossNotFinite: return "gradient with a loss that is not finite"
        case .gradientNotFinite(let tensor): return "gradient tensor \(tensor) holds values that are not finite"
        case .badState(let m): return m
        case .tensors(let e): return "\(e)"
        case .incomplete(let s): return "gradient parts for step \(s + 1) do not cover the whole table; dropped them"
        }
    }
}

/// Assembles one worker's gradient push for one step from its parts (ps-lite's request
/// tracking, for our one request type). A push is part p of `parts`, each a contiguous run
/// of the parameter table; token count, loss, timings and carried state ride on the last
/// part. The push is complete when the parts covered the whole table exactly once
/// (`PartCoverage`, the same bookkeeping a shard keeps over its range's pieces).
///
/// Every part is validated before anything is copied; a refused part changes nothing.
final class PushAssembler {
    let layout: ParameterLayout
    /// The worker's streams: its carried state rows and token count (n·T).
    let streams: Range<Int>
    let expectedTokens: Int
    /// Sharded parameter servers hold the gradient: the push to the coordinator is one part
    /// with no tensors (loss, tokens, state and timing only).
    let gradientAtShards: Bool
    /// (P, or 0 when sharded) where the worker's gradient is assembled.
    let gradient: UnsafeMutableBufferPointer<Float>

    private(set) var step: UInt64 = 0
    private(set) var isComplete = false
    /// The parts so far, as runs of the slab's elements (tensor boundaries).
    private var parts: PartCoverage
    /// From the last part.
    private(set) var lossSum = 0.0
    private(set) var timing = (compute: 0.0, communicate: 0.0, wait: 0.0)

    /// `window`: the predictions of each stream (T; 1 for a classifier's examples).
    init(layout: ParameterLayout, streams: Range<Int>, window: Int, gradientAtShards: Bool = false) {
        self.layout = layout
        self.streams = streams
        self.gradientAtShards = gradientAtShards
        expectedTokens = streams.count * window
        gradient = .allocate(capacity: gradientAtShards ? 0 : layout.count)
        gradient.initialize(repeating: 0)
        parts = PartCoverage(count: layout.count, maximumParts: layout.slices.count)
    }

    deinit { gradient.deallocate() }

    /// Starts gathering `step`: forgets every part received so far.
    func expect(step: UInt64) {
        self.step = step
        isComplete = false
        parts.reset()
    }

    /// Validates one part and copies it in; the last part's state goes to the rows of
    /// `streams` in `state`. Returns true when the push is complete.
    func accept(_ push: DecodedGradientPush, state: CarriedState) throws -> Bool {
        guard push.step == step else {
            throw PushRejection.wrongStep(.unexpectedStep(kind: .gradientPush, received: push.step, expected: step))
        }
        guard !isComplete else { throw PushRejection.duplicate(step: step) }
        if let problem = parts.problem(part: push.part, parts: push.parts, step: step) { throw problem }
        let run = try tensorRun(of: push)
        let elements = layout.elements(of: run)
        if let problem = parts.problem(elements: elements, step: step) { throw problem }
        let last = push.part == push.parts - 1
        if last { try checkLastPart(push, state: state) }
        try copy(push, run: run)
        let whole = parts.record(part: push.part, parts: push.parts, elements: elements)
        if last {
            state.set(push.state, streams: streams)
            lossSum = push.lossSum
            timing = (push.computeSeconds, push.communicateSeconds, push.waitSeconds)
        }
        if let whole {
            guard whole else {
                expect(step: step)
                throw PushRejection.incomplete(step: step)
            }
            isComplete = true
        }
        return isComplete
    }

    /// The tensors of the table a part brings: a whole push is the whole table; a part's run
    /// starts at its first tensor. Sharded, the push is one part with no tensors.
    private func tensorRun(of push: DecodedGradientPush) throws -> Range<Int> {
        let table = layout.slices
        if gradientAtShards {
            guard push.parts == 1, push.tensors.count == 0 else {
                throw PushRejection.tensors(.tensorCountMismatch(received: push.tensors.count, expected: 0))
            }
            return table.indices
        }
        if push.parts == 1 { return table.indices }
        guard let first = push.tensors.names.first, let start = table.firstIndex(where: { $0.name == first }) else {
            throw PushRejection.noTensorsOfThisModel
        }
        return start..<min(table.count, start + push.tensors.count)
    }

    /// The last part carries the token count, the loss and the carried state.
    private func checkLastPart(_ push: DecodedGradientPush, state: CarriedState) throws {
        guard push.tokenCount == UInt64(expectedTokens) else {
            throw PushRejection.tokenCount(received: push.tokenCount, expected: expectedTokens)
        }
        guard push.lossSum.isFinite else { throw PushRejection.lossNotFinite }
        if let problem = state.problem(with: push.state, streams: streams) { throw PushRejection.badState(problem) }
    }

    /// The part's tensors into the gradient (nothing when sharded); all values must be finite.
    private func copy(_ push: DecodedGradientPush, run: Range<Int>) throws {
        guard !gradientAtShards else { return }
        do {
            try push.copyTensors(into: gradient, layout: layout, slices: run)
        } catch let error as WireError {
            throw PushRejection.tensors(error)
        }
        let table = layout.slices
        if let bad = run.first(where: { !allFinite(gradient.baseAddress! + table[$0].offset, count: table[$0].count) }) {
            throw PushRejection.gradientNotFinite(tensor: table[bad].name)   // the slab is overwritten by the next push
        }
    }
}

/// True when no value is NaN or infinite: x·0 is 0 for finite x and NaN otherwise, summed
/// in 16 lanes (a scalar float reduction would not vectorise).
func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    var lanes = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        lanes += UnsafeRawPointer(values + i).loadUnaligned(as: SIMD16<Float>.self) * 0
        i += 16
    }
    var rest: Float = 0
    while i < count { rest += values[i] * 0; i += 1 }
    return (lanes.sum() + rest) == 0
}

/// A 0-based step as users count it, also for the largest value a peer can send.
func oneBased(_ step: UInt64) -> String { step == .max ? "2^64" : "\(step + 1)" }
