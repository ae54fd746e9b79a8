/// How the train split is cut into N parallel streams read T columns at a time (the
/// data-layout contract).
///
/// With R = floor((nTrain-1)/(N·T))·T, stream b owns inputs `train[b·R ..< b·R+R]` and the
/// targets one position later. Step k of an epoch reads columns k·T ..< k·T+T of every stream,
/// so an epoch has R/T steps; hidden state carries across the steps of an epoch and is zeroed
/// at its start. The last nTrain - N·R tokens (fewer than N·T + 1) are never inputs.
///
/// Dimension letters: N streams, T window, R stream length.
public struct StreamLayout: Equatable, Hashable, Sendable {
    /// nTrain, the length of the train split.
    public let trainCount: Int
    /// N.
    public let streamCount: Int
    /// T, the BPTT window.
    public let window: Int
    /// R = floor((nTrain-1)/(N·T))·T, a multiple of T.
    public let streamLength: Int

    /// The smallest train split that gives each of N streams one window: N·T + 1.
    public static func minimumTrainCount(streams: Int, window: Int) -> Int {
        streams * window + 1
    }

    /// Requires nTrain ≥ N·T + 1; check user input first with `Corpus.requireTrainingLength`.
    public init(trainCount nTrain: Int, streams N: Int, window T: Int) {
        precondition(N > 0 && T > 0, "streams and window must be positive, got N=\(N) T=\(T)")
        precondition(nTrain >= Self.minimumTrainCount(streams: N, window: T),
                     "train split of \(nTrain) is shorter than N·T+1 = \(N * T + 1)")
        trainCount = nTrain
        streamCount = N
        window = T
        streamLength = (nTrain - 1) / (N * T) * T
    }

    /// R / T, the steps in one epoch (≥ 1).
    public var stepsPerEpoch: Int { streamLength / window }

    /// Input tokens read per epoch: N·R.
    public var tokensPerEpoch: Int { streamCount * streamLength }

    /// Epoch and step within it of global step s (counted from 0): epoch e covers steps
    /// e·stepsPerEpoch ..< (e+1)·stepsPerEpoch.
    public func position(globalStep s: Int) -> (epoch: Int, stepInEpoch: Int) {
        precondition(s >= 0, "global step must be non-negative, got \(s)")
        return (s / stepsPerEpoch, s % stepsPerEpoch)
    }

    /// Writes step k's window of the streams in `streams` as row-major (n, T) matrices, n =
    /// streams.count: row r = stream streams.lowerBound + r,
    /// inputs[r·T + t] = train[b·R + k·T + t], targets[r·T + t] = train[b·R + k·T + t + 1].
    ///
    /// `train` is the whole train split (count = nTrain), so a worker or thread fills its own
    /// block of streams and the blocks together equal the whole-batch fill.
    public func fill(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     train: TokenStore, streams: Range<Int>, stepInEpoch k: Int) {
        precondition(train.count == trainCount, "train split has \(train.count) tokens, layout expects \(trainCount)")
        precondition(streams.lowerBound >= 0 && streams.upperBound <= streamCount,
                     "streams \(streams) outside 0..<\(streamCount)")
        precondition(k >= 0 && k < stepsPerEpoch, "step \(k) outside 0..<\(stepsPerEpoch)")
        let T = window, R = streamLength
        for b in streams {
            let row = b - streams.lowerBound
            let start = b * R + k * T
            train.copy(from: start, count: T, into: inputs + row * T)
            train.copy(from: start + 1, count: T, into: targets + row * T)
        }
    }

    /// `fill` into fresh arrays, for tests and callers off the hot path.
    public func batch(train: TokenStore, streams: Range<Int>, stepInEpoch k: Int)
        -> (inputs: [Int32], targets: [Int32]) {
        let size = streams.count * window
        var inputs = [Int32](repeating: 0, count: size)
        var targets = [Int32](repeating: 0, count: size)
        inputs.withUnsafeMutableBufferPointer { i in
            targets.withUnsafeMutableBufferPointer { t in
                if size > 0 {
                    fill(inputs: i.baseAddress!, targets: t.baseAddress!, train: train, streams: streams, stepInEpoch: k)
                }
            }
        }
        return (inputs, targets)
    }

    /// `batch` of ids in an array (tests).
    public func batch(train: [Int32], streams: Range<Int>, stepInEpoch k: Int) -> (inputs: [Int32], targets: [Int32]) {
        batch(train: TokenStore(train, vocabularySize: Int(train.max() ?? 0) + 1), streams: streams, stepInEpoch: k)
    }

    /// Splits `range` into `parts` contiguous blocks in order, sizes differing by at most one
    /// (the first count % parts blocks get the extra one); blocks are empty when parts > count.
    /// Workers split the N streams this way, and threads split a worker's block again.
    public static func contiguousBlocks(of range: Range<Int>, parts: Int) -> [Range<Int>] {
        precondition(parts > 0, "parts must be positive, got \(parts)")
        let base = range.count / parts, extra = range.count % parts
        var blocks: [Range<Int>] = []
        blocks.reserveCapacity(parts)
        var start = range.lowerBound
        for p in 0..<parts {
            let end = start + base + (p < extra ? 1 : 0)
            blocks.append(start..<end)
            start = end
        }
        return blocks
    }

    /// Consecutive blocks of `sizes` from 0, in order: the split `--balance` sizes by speed.
    public static func contiguousBlocks(sizes: [Int]) -> [Range<Int>] {
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return start..<(start + size)
        }
    }
}
