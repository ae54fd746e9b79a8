/// Names a worker that computes more than `margin` slower than the median of all workers
/// (and at least `floor` seconds slower: sub-millisecond steps are noise) for `patience`
/// steps in a row, once: the step waits for the slowest, so one slow node slows the whole
/// job, and the log should say which.
struct StragglerWatch {
    var margin = 0.25
    var patience = 20
    var floor = 0.001
    private var slowSteps: [Int: Int] = [:]   // rank → consecutive slow steps
    private var named: Set<Int> = []

    /// Takes one step's compute seconds per rank; returns the lines to log.
    mutating func observe(_ compute: [(rank: Int, seconds: Double, name: String)]) -> [String] {
        guard compute.count > 1 else { return [] }
        let sorted = compute.map(\.seconds).sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2]
                                           : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        var lines: [String] = []
        for worker in compute {
            let slow = worker.seconds > median * (1 + margin) && worker.seconds - median > floor
            slowSteps[worker.rank] = slow ? (slowSteps[worker.rank] ?? 0) + 1 : 0
            if slowSteps[worker.rank] == patience, !named.contains(worker.rank) {
                named.insert(worker.rank)
                lines.append("\(worker.name) is a straggler: its compute was more than \(Int(margin * 100))% above the median for \(patience) steps in a row (last \(Self.milliseconds(worker.seconds)) ms vs \(Self.milliseconds(median)) ms)")
            }
        }
        return lines
    }

    /// One decimal below 10 ms, whole above.
    static func milliseconds(_ seconds: Double) -> String {
        seconds < 0.01 ? String(format: "%.1f", seconds * 1000) : String(Int((seconds * 1000).rounded()))
    }
}
