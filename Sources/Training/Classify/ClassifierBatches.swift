/// Which training examples each step of a classification run reads (the data-layout
/// contract of `--task classify`, docs/DESIGN.md).
///
/// Epoch e is a permutation of the M training examples (Fisher–Yates driven by a
/// `SeededGenerator` seeded with the run's seed and e), cut into windows of
/// `sortWindow`·N examples, each window stably sorted by input length (after truncation to
/// `maxLength`), longest first, so that the examples of a batch, and of each of its chunks,
/// have similar lengths. Step k of the epoch reads examples k·N ..< k·N + N of that order;
/// an epoch has floor(M / N) steps (the last M mod N examples of an order sit the epoch out).
///
/// Every process derives the same order from (seed, epoch), so a worker needs no message to
/// know its examples; the order does not depend on workers or threads.
public struct ClassifierBatches: Sendable {
    /// Windows of this many batches are sorted by length.
    public static let sortWindow = 16

    public let exampleCount: Int
    /// N, examples per step.
    public let batch: Int
    public let seed: UInt64
    /// The sort key of each example: min(length, maxLength).
    private let lengths: [Int]

    public init(train: LabelledExamples, batch: Int, maxLength: Int, seed: UInt64) {
        precondition(batch > 0 && train.count >= batch, "a batch of \(batch) needs at least as many training examples, got \(train.count)")
        exampleCount = train.count
        self.batch = batch
        self.seed = seed
        lengths = train.examples.map { min($0.count, maxLength) }
    }

    /// floor(M / N) ≥ 1.
    public var stepsPerEpoch: Int { exampleCount / batch }

    public func position(globalStep s: Int) -> (epoch: Int, stepInEpoch: Int) { (s / stepsPerEpoch, s % stepsPerEpoch) }

    /// The order of epoch `epoch`: M example indices (see the type's comment).
    public func order(epoch: Int) -> [Int] {
        var random = SeededGenerator(seed: seed ^ (0xC1A5_5EED &* UInt64(epoch + 1)))
        var order = Array(0..<exampleCount)
        for i in stride(from: exampleCount - 1, to: 0, by: -1) {
            order.swapAt(i, random.nextInt(below: i + 1))
        }
        let window = Self.sortWindow * batch
        for start in stride(from: 0, to: exampleCount, by: window) {
            let end = min(start + window, exampleCount)
            // Stable: ties keep the permutation's order (sort by (length desc, position)).
            let sorted = order[start..<end].enumerated().sorted {
                lengths[$0.element] != lengths[$1.element] ? lengths[$0.element] > lengths[$1.element] : $0.offset < $1.offset
            }.map(\.element)
            order.replaceSubrange(start..<end, with: sorted)
        }
        return order
    }

    /// The N example indices of step `stepInEpoch` in an epoch's `order`.
    public func batch(_ stepInEpoch: Int, of order: [Int]) -> ArraySlice<Int> {
        precondition(stepInEpoch >= 0 && stepInEpoch < stepsPerEpoch, "step \(stepInEpoch) outside 0..<\(stepsPerEpoch)")
        return order[(stepInEpoch * batch)..<(stepInEpoch * batch + batch)]
    }
}
