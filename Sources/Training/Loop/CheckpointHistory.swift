import Foundation

/// The checkpoints a run keeps besides its latest one (`--checkpoint DIR`): after an
/// evaluation, a copy named by step and validation loss beside it,
///
///     DIR                                  the latest checkpoint (written as before)
///     DIR-step-001200-val-1.4321           a named checkpoint of step 1200, validation 1.4321 nats/char
///     DIR-best -> DIR-step-001200-val-1.4321   symlink to the lowest validation loss so far
///
/// written when the evaluation is the best so far or `keep` > 0. The best one and the `keep`
/// most recent others stay; older ones are removed. `earlyStop` K > 0 asks the run to stop after
/// K evaluations in a row without a new best. A resumed run finds the named checkpoints of its
/// earlier part by their names; a new run removes those it finds (they belong to the run whose
/// latest checkpoint it replaces).
public final class CheckpointHistory {
    public struct Entry: Equatable {
        public var step: Int
        public var loss: Double
        public var url: URL
    }

    public let latest: URL
    public let keep: Int
    public let earlyStop: Int
    /// Named checkpoints on disk, oldest step first.
    public private(set) var entries: [Entry] = []
    public private(set) var best: Entry?
    /// Evaluations since the last new best (this process only).
    public private(set) var evaluationsWithoutImprovement = 0

    public init(latest: URL, keep: Int, earlyStop: Int, resumed: Bool) {
        precondition(keep >= 0 && earlyStop >= 0)
        self.latest = latest.standardizedFileURL
        self.keep = keep
        self.earlyStop = earlyStop
        let parent = self.latest.deletingLastPathComponent()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        entries = names.compactMap { name in
            Self.parse(name, prefix: self.latest.lastPathComponent).map { Entry(step: $0.step, loss: $0.loss, url: parent.appendingPathComponent(name)) }
        }.sorted { $0.step < $1.step }
        if !resumed {
            for entry in entries { AtomicDirectory.removeTree(entry.url.path) }
            unlink(bestLink.path)
            entries = []
        }
        best = entries.min { $0.loss < $1.loss }
    }

    /// `DIR-step-001200-val-1.4321`.
    public func url(step: Int, loss: Double) -> URL {
        latest.deletingLastPathComponent().appendingPathComponent(latest.lastPathComponent + String(format: "-step-%06d-val-%.4f", step, loss))
    }

    public var bestLink: URL { latest.deletingLastPathComponent().appendingPathComponent(latest.lastPathComponent + "-best") }

    static func parse(_ name: String, prefix: String) -> (step: Int, loss: Double)? {
        guard name.hasPrefix(prefix + "-step-") else { return nil }
        let parts = name.dropFirst(prefix.count + 6).split(separator: "-", maxSplits: 2)
        guard parts.count == 3, parts[1] == "val", let step = Int(parts[0]), let loss = Double(parts[2]) else { return nil }
        return (step, loss)
    }

    /// After an evaluation of step `step`: writes a named checkpoint through `write` when it is
    /// the best so far or older ones are kept, points `DIR-best` at the best, removes what is
    /// no longer kept. Returns true when the run should stop early.
    public func record(step: Int, loss: Double, write: (URL) throws -> Void) throws -> Bool {
        let improved = best.map { loss < $0.loss } ?? true
        evaluationsWithoutImprovement = improved ? 0 : evaluationsWithoutImprovement + 1
        if improved || keep > 0 {
            let entry = Entry(step: step, loss: loss, url: url(step: step, loss: loss))
            try write(entry.url)
            entries.removeAll { $0.url == entry.url }
            entries.append(entry)
            if improved {
                best = entry
                try pointBest(at: entry.url)
            }
            prune()
        }
        return earlyStop > 0 && evaluationsWithoutImprovement >= earlyStop
    }

    /// The best one and the `keep` most recent others stay.
    private func prune() {
        let others = entries.filter { $0 != best }
        for old in others.dropLast(keep) {
            AtomicDirectory.removeTree(old.url.path)
            entries.removeAll { $0 == old }
        }
    }

    /// Replaces the `DIR-best` symlink atomically (a new link renamed over the old).
    private func pointBest(at target: URL) throws {
        let link = bestLink.path
        let temporary = link + ".tmp-" + AtomicDirectory.uniqueSuffix()
        try AtomicDirectory.call("symlink", temporary) { symlink(target.lastPathComponent, temporary) }
        do {
            try AtomicDirectory.call("rename", link) { rename(temporary, link) }
        } catch {
            unlink(temporary)
            throw error
        }
    }
}
