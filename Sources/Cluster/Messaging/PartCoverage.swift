/// Which parts of one push have arrived, as runs of elements: the one part bookkeeping of the
/// coordinator and the shards. A push to the coordinator is cut at tensor boundaries (a run of
/// the parameter table, `ParameterLayout.elements(of:)`), a push to a shard at the pieces of its
/// range (`SlabPartition.pushPieces`). Part p of `parts` is one contiguous run; the push is whole
/// when every part arrived once and together they cover [0, count) exactly once.
///
/// `problem` says why a part cannot be taken and changes nothing; `record` takes a checked part.
struct PartCoverage {
    /// Elements of the whole push.
    let count: Int
    /// The most parts a push may come in (the table's tensors, the range's pieces).
    let maximumParts: Int
    /// The part count every part so far stated.
    private(set) var parts: UInt32?
    private var received: Set<UInt32> = []
    /// At most `maximumParts` runs, never overlapping.
    private var covered: [Range<Int>] = []

    init(count: Int, maximumParts: Int) {
        self.count = count
        self.maximumParts = maximumParts
    }

    /// Forgets every part (a new step, or a push found incomplete).
    mutating func reset() {
        parts = nil
        received = []
        covered = []
    }

    var isEmpty: Bool { received.isEmpty }

    /// Why part `part` of `parts` cannot be taken for `step` (its numbers); nil: it can.
    func problem(part: UInt32, parts: UInt32, step: UInt64) -> PushRejection? {
        guard parts >= 1, parts <= UInt32(clamping: maximumParts), part < parts else {
            return .badPartNumber(part: part, parts: parts, tableCount: maximumParts)
        }
        if let earlier = self.parts, earlier != parts { return .partCountChanged(parts: parts, earlier: earlier) }
        guard !received.contains(part) else { return .duplicatePart(part: part, parts: parts, step: step) }
        return nil
    }

    /// Why a part covering `elements` cannot be taken for `step` (outside the push, or elements
    /// another part already brought); nil: it can.
    func problem(elements: Range<Int>, step: UInt64) -> PushRejection? {
        guard elements.lowerBound >= 0, elements.upperBound <= count, !covered.contains(where: { $0.overlaps(elements) }) else {
            return .repeatsTensors(step: step)
        }
        return nil
    }

    /// Takes a part `problem` found nothing wrong with. Returns nil while parts are missing, then
    /// whether they cover the whole push.
    mutating func record(part: UInt32, parts: UInt32, elements: Range<Int>) -> Bool? {
        self.parts = parts
        received.insert(part)
        covered.append(elements)
        guard received.count == Int(parts) else { return nil }
        return covered.reduce(0) { $0 + $1.count } == count
    }
}
