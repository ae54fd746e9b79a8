/// The load-balancing policy of `--balance on`: how many chunks each worker should own so
/// that all finish a step together, from their measured speed. A value with no clock and no
/// sockets: the coordinator feeds it each gathered step's compute times and asks it, between
/// steps, whether a new split is worth a round of welcomes.
///
/// Speed is a worker's compute seconds per chunk (its step's compute over its chunk count),
/// the median of its last `window` steps, so one slow step (a page fault, a neighbour's burst)
/// moves nothing. The split minimises the predicted step, the largest chunks × seconds per
/// chunk, with every worker keeping at least one chunk; blocks stay contiguous in rank order,
/// so only their sizes change. Any split gives the same weights: the policy can cost time,
/// never bits.
///
/// Hysteresis: a new split is proposed only when it predicts a step shorter by more than
/// `minimumGain` (and by at least `minimumSavedSeconds`: sub-millisecond differences are
/// noise), when the current assignment has run `minimumSteps` steps, and when every worker
/// has `window` measurements. A worker whose speed changed for real is not made to wait for
/// its median: `shiftSteps` steps in a row at more than `shiftFactor` times (or less than
/// 1 / `shiftFactor` of) its median replace its window, and the next step boundary may move
/// chunks at once (one such step still moves nothing). A worker that fell behind within a step (a copy of its node
/// was faster, `ReissuePolicy`) is the exception: its speed changed, so its window is filled
/// with what it showed and the next step boundary may move chunks at once. Such an urgent
/// proposal does not wait for the others' full windows either: `urgentSamples` steps each do
/// (a straggler from the first step is not left with its chunks until step 6).
struct ChunkBalancer {
    var window = 5
    /// 5%: blocks of 9 going back to 8 (a transient straggler recovered) save 11.1%, less by
    /// the predicted side: a fixed cost per step counts as per-chunk cost, so the worker that
    /// kept 2 chunks looks 5% slower per chunk than it is (W = 8 emulated, 10 ms per chunk and
    /// 1 ms per step: 7.7% predicted), and at 10% the noise in the medians held returns back
    /// for 6 steps, at 8% for good (measured).
    var minimumGain = 0.05
    var minimumSavedSeconds = 0.005
    var minimumSteps = 5
    var shiftFactor = 2.0
    var shiftSteps = 2
    var urgentSamples = 2

    /// Compute seconds per chunk of each worker's latest steps, oldest first (at most `window`).
    private(set) var samples: [PeerIdentity: [Double]] = [:]
    /// Steps gathered since the last assignment.
    private(set) var stepsSinceAssignment = 0
    /// A worker fell behind or changed speed since the last assignment: a proposal need not
    /// wait `minimumSteps`.
    private(set) var urgent = false
    /// Consecutive samples of a worker beyond `shiftFactor` of its median, and their direction.
    private var shifts: [PeerIdentity: (count: Int, slower: Bool)] = [:]

    /// A better split: sizes in rank order, the speeds it was computed from, and the predicted
    /// step of the current split and of this one.
    struct Proposal: Equatable {
        var sizes: [Int]
        var secondsPerChunk: [Double]
        var currentSeconds: Double
        var predictedSeconds: Double
    }

    /// One gathered step: each worker's compute seconds for its block of `chunks` chunks. A
    /// value that is not a finite non-negative number (a broken or hostile report) is skipped.
    mutating func observe(_ workers: [(identity: PeerIdentity, computeSeconds: Double, chunks: Int)]) {
        stepsSinceAssignment += 1
        for worker in workers where worker.chunks > 0 && worker.computeSeconds.isFinite && worker.computeSeconds >= 0 {
            let sample = worker.computeSeconds / Double(worker.chunks)
            if shifted(worker.identity, to: sample) { continue }
            var kept = samples[worker.identity] ?? []
            kept.append(sample)
            samples[worker.identity] = Array(kept.suffix(window))
        }
    }

    /// A new assignment (after a join, a loss or a rebalance) starts the step count again; the
    /// measurements of workers no longer in `members` are forgotten, the others' kept (seconds
    /// per chunk do not depend on the block).
    mutating func assigned(members: [PeerIdentity]) {
        stepsSinceAssignment = 0
        urgent = false
        samples = samples.filter { member in members.contains(member.key) }
    }

    /// `member` fell behind: a copy finished its node first, after `secondsPerChunk` per chunk
    /// of its block (a lower bound of its speed now). Its window becomes that value, at least
    /// what it was.
    mutating func fellBehind(_ member: PeerIdentity, secondsPerChunk: Double) {
        guard secondsPerChunk.isFinite, secondsPerChunk > 0 else { return }
        let now = max(secondsPerChunk, self.secondsPerChunk(of: member) ?? 0)
        samples[member] = Array(repeating: now, count: window)
        urgent = true
    }

    /// Whether `sample` completes `shiftSteps` in a row beyond `shiftFactor` of the worker's
    /// median, in one direction: then its window is that speed and the run may rebalance now.
    private mutating func shifted(_ member: PeerIdentity, to sample: Double) -> Bool {
        guard let median = secondsPerChunk(of: member), median > 0, sample > 0,
              sample > median * shiftFactor || sample < median / shiftFactor else {
            shifts[member] = nil
            return false
        }
        let slower = sample > median, previous = shifts[member]
        let count = previous?.slower == slower ? previous!.count + 1 : 1
        guard count >= shiftSteps else {
            shifts[member] = (count, slower)
            return false
        }
        shifts[member] = nil
        samples[member] = Array(repeating: sample, count: window)
        urgent = true
        return true
    }

    /// The late push of a worker that fell behind arrived: its real seconds per chunk for that
    /// step, which replaces the lower bound.
    mutating func observeLate(_ member: PeerIdentity, secondsPerChunk: Double) {
        guard secondsPerChunk.isFinite, secondsPerChunk > 0 else { return }
        samples[member] = Array(repeating: secondsPerChunk, count: window)
    }

    /// The median seconds per chunk of `member`; nil before `window` measurements.
    func secondsPerChunk(of member: PeerIdentity) -> Double? { secondsPerChunk(of: member, measured: window) }

    /// The median of `member`'s samples once it has `count` of them.
    private func secondsPerChunk(of member: PeerIdentity, measured count: Int) -> Double? {
        guard let kept = samples[member], kept.count >= count else { return nil }
        return Self.median(kept)
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// For the workers in rank order and their current block sizes: a better split, or nil
    /// when none is worth a reassignment.
    func proposal(members: [PeerIdentity], sizes: [Int]) -> Proposal? {
        guard members.count > 1, members.count == sizes.count, stepsSinceAssignment >= minimumSteps || urgent else { return nil }
        let speeds = members.compactMap { secondsPerChunk(of: $0, measured: urgent ? urgentSamples : window) }
        // A worker that reports no compute at all tells nothing about its speed.
        guard speeds.count == members.count, speeds.allSatisfy({ $0 > 0 }) else { return nil }
        let current = Self.predictedSeconds(sizes: sizes, secondsPerChunk: speeds)
        let better = Self.sizes(secondsPerChunk: speeds, chunks: sizes.reduce(0, +))
        let predicted = Self.predictedSeconds(sizes: better, secondsPerChunk: speeds)
        guard better != sizes, predicted < current * (1 - minimumGain), current - predicted >= minimumSavedSeconds else { return nil }
        return Proposal(sizes: better, secondsPerChunk: speeds, currentSeconds: current, predictedSeconds: predicted)
    }

    /// The step a split predicts: the latest finish, chunks × seconds per chunk.
    static func predictedSeconds(sizes: [Int], secondsPerChunk: [Double]) -> Double {
        zip(sizes, secondsPerChunk).map { Double($0) * $1 }.max() ?? 0
    }

    /// Block sizes (≥ 1 each, summing to `chunks` ≥ the worker count) minimising the largest
    /// chunks × seconds per chunk: one chunk each, then each further chunk to the worker that
    /// would finish it first (the lowest rank on a tie, so the split is reproducible). Giving
    /// chunks one at a time to the earliest finish is optimal for this min-max.
    static func sizes(secondsPerChunk: [Double], chunks: Int) -> [Int] {
        precondition(chunks >= secondsPerChunk.count, "every worker needs a chunk")
        var sizes = [Int](repeating: 1, count: secondsPerChunk.count)
        for _ in secondsPerChunk.count..<chunks {
            let next = sizes.indices.min { a, b in
                let finishA = Double(sizes[a] + 1) * secondsPerChunk[a], finishB = Double(sizes[b] + 1) * secondsPerChunk[b]
                return finishA < finishB || (finishA == finishB && a < b)
            }!
            sizes[next] += 1
        }
        return sizes
    }
}
