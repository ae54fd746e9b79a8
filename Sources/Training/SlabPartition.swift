import Recurrent

/// The parameter slab (P values, `ParameterLayout` order) cut two ways, both fixed by the
/// parameter table alone:
///
/// - **norm blocks**: whole rows of one tensor, at most `blockElements` values each (a 1-D
///   tensor's rows are single values). The global gradient norm is the sum of the blocks'
///   sums of squares in block order, so it is the same number whoever computes which blocks.
/// - **shard ranges**: S contiguous ranges balanced by bytes, cut at the block boundary
///   nearest to k·P/S, so every cut is a row boundary and every block lies in one shard.
///
/// Sharded parameter servers (`--shards S`) each own one range; `S = 1` is one range over
/// the whole slab. The weights after N steps are the same for every S.
public struct SlabPartition: Equatable, Sendable {
    public static let blockElements = 8192

    /// Element ranges of the norm blocks, in slab order, covering 0..<P.
    public let blocks: [Range<Int>]
    /// S element ranges, in slab order, covering 0..<P.
    public let shards: [Range<Int>]
    /// For each shard, the indices of its blocks.
    public let shardBlocks: [Range<Int>]

    /// The pieces of shard range `range` a worker pushes for one node, in part order: when the
    /// gradient of elements `earlyFrom...` is final before the rest (the top layer and head,
    /// `GradientEngine.earlySlices`), the range's share of that run first, sent while the
    /// lower layers' backward still runs, then the rest; one piece, the whole range, when there
    /// is no early run or the range lies on one side of it. Worker and shard both derive them
    /// from the layout, so a push's part number says which piece it is.
    public static func pushPieces(of range: Range<Int>, earlyFrom e: Int?) -> [Range<Int>] {
        guard let e, e > range.lowerBound, e < range.upperBound else { return [range] }
        return [e..<range.upperBound, range.lowerBound..<e]
    }

    /// The most shards a layout can be cut into (one block each).
    public static func maximumShards(_ layout: ParameterLayout) -> Int { blocks(of: layout).count }

    public init(layout: ParameterLayout, shards count: Int) {
        precondition(count >= 1)
        let blocks = Self.blocks(of: layout)
        precondition(count <= blocks.count, "\(count) shards of \(blocks.count) blocks")
        // Cut k (1 ≤ k < S) at the block boundary nearest to k·P/S, at least one block per shard.
        var cuts = [0]
        for k in 1..<count {
            let target = Double(layout.count) * Double(k) / Double(count)
            let lowest = cuts.last! + 1, highest = blocks.count - (count - k)
            var best = lowest
            for b in lowest...highest where abs(Double(blocks[b].lowerBound) - target) < abs(Double(blocks[best].lowerBound) - target) {
                best = b
            }
            cuts.append(best)
        }
        cuts.append(blocks.count)
        self.blocks = blocks
        shardBlocks = (0..<count).map { cuts[$0]..<cuts[$0 + 1] }
        shards = shardBlocks.map { blocks[$0.lowerBound].lowerBound..<blocks[$0.upperBound - 1].upperBound }
    }

    private static func blocks(of layout: ParameterLayout) -> [Range<Int>] {
        var blocks: [Range<Int>] = []
        for slice in layout.slices {
            let rows = slice.shape.count > 1 ? slice.shape[0] : slice.count
            let rowLength = slice.count / max(rows, 1)
            let rowsPerBlock = max(1, blockElements / max(rowLength, 1))
            var row = 0
            while row < rows {
                let end = min(rows, row + rowsPerBlock)
                blocks.append((slice.offset + row * rowLength)..<(slice.offset + end * rowLength))
                row = end
            }
        }
        return blocks
    }
}
