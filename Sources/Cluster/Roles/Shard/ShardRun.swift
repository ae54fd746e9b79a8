import Recurrent
import Training
import Wire

/// What a shard setup fixed, and the step being gathered: the range's weights and optimizer
/// state (`RangeUpdate`), who may push which reduction-tree nodes, and the node sums so far.
/// Its buffers are the shard's only large memory: one range-sized buffer per node in flight.
final class ShardRun {
    let shard: Int
    let update: RangeUpdate
    private(set) var workerCount: Int
    /// The secret of each rank of the current assignment (`ShardCommand.rankTickets`): a hello
    /// for rank r is admitted only with ticket r.
    var tickets: [String] = []
    let chunkCount: Int
    /// The reduction-tree nodes each rank's pushes may name: its block of the assignment (the
    /// equal split, or the sizes a `reassign` gives) cut into tree nodes.
    private(set) var nodesOfRank: [[Range<Int>]]
    let tokensPerStep: Int
    /// The pieces of the range a node's push comes in (`SlabPartition.pushPieces`).
    let pieces: [Range<Int>]
    /// The step being gathered (the last broadcast), and the broadcast still waiting for every
    /// worker's hello.
    var step: UInt64
    var broadcastPending: ShardCommand?
    /// The last broadcast sent, and the ranks that hold this shard's weights of `step`: those it
    /// reached, one released after it went out (sent them then), and one that computed the
    /// step ahead from an earlier broadcast of it (`accept`). Emptied with the step's sums.
    var broadcastSent: ShardCommand?
    var sentTo: Set<Int> = []
    /// Nodes re-issued within the step, late pushes to drop quietly, ranks held back.
    var copies = ShardCopies()
    /// Node sums of `step`: whole, and still missing a piece (with the parts received).
    private var nodes: [(chunks: Range<Int>, values: UnsafeMutableBufferPointer<Float>)] = []
    private var partial: [(chunks: Range<Int>, values: UnsafeMutableBufferPointer<Float>, parts: PartCoverage)] = []
    /// The summed, prepared gradient of `step` once every node arrived.
    private(set) var summed: UnsafeMutableBufferPointer<Float>?
    private var spare: [UnsafeMutableBufferPointer<Float>] = []

    init(shard: Int, update: RangeUpdate, workerCount: Int, chunkCount: Int, tokensPerStep: Int, earlyFrom: Int?, step: UInt64) {
        self.shard = shard
        pieces = SlabPartition.pushPieces(of: update.range, earlyFrom: earlyFrom)
        self.update = update
        self.workerCount = workerCount
        self.chunkCount = chunkCount
        nodesOfRank = Self.nodes(of: StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: workerCount), chunkCount: chunkCount)
        self.tokensPerStep = tokensPerStep
        self.step = step
    }

    deinit { (nodes.map(\.values) + partial.map(\.values) + spare).forEach { $0.deallocate() } }

    static func nodes(of blocks: [Range<Int>], chunkCount: Int) -> [[Range<Int>]] {
        blocks.map { ReductionTree.nodes(covering: $0, in: 0..<chunkCount) }
    }

    /// A new assignment: `workers` ranks with contiguous blocks of `blockSizes` chunks in rank
    /// order (empty: the equal split). Sizes that are not one positive size per rank covering
    /// every chunk are a protocol violation.
    func assign(workers: Int, blockSizes: [Int]) throws {
        var blocks = StreamLayout.contiguousBlocks(of: 0..<chunkCount, parts: workers)
        if !blockSizes.isEmpty {
            guard blockSizes.count == workers, blockSizes.allSatisfy({ $0 >= 1 }), blockSizes.reduce(0, +) == chunkCount else {
                throw ClusterError.protocolViolation("reassign with blocks of \(blockSizes) chunks for \(workers) workers over \(chunkCount) chunks")
            }
            blocks = StreamLayout.contiguousBlocks(sizes: blockSizes)
        }
        workerCount = workers
        nodesOfRank = Self.nodes(of: blocks, chunkCount: chunkCount)
    }

    private func buffer() -> UnsafeMutableBufferPointer<Float> {
        spare.popLast() ?? .allocate(capacity: update.range.count)
    }

    /// Forgets the step's node sums (their buffers are kept for the next step).
    func recycle() {
        spare += nodes.map(\.values) + partial.map(\.values)
        nodes = []
        partial = []
        summed = nil
        sentTo = []
    }

    /// One piece of one node's sum for this range (`SlabPartition.pushPieces`: the early run
    /// while backward goes on, then the rest): checked and copied; once a node has every piece
    /// and the nodes tile every chunk, they are added in the fixed tree and divided by the
    /// tokens. Returns the Σg² of each norm block then, else nil.
    func accept(_ push: DecodedGradientPush, from rank: Int) throws -> [Double]? {
        // Work of an older step that a re-issue made late (a copy that lost, a step the rank
        // fell behind on): dropped without a rejection.
        if copies.isLate(push.step, from: rank, step: step) { return nil }
        guard push.step == step else {
            throw PushRejection.wrongStep(.unexpectedStep(kind: .gradientPush, received: push.step, expected: step))
        }
        // A push while the step's broadcast waits for hellos (a new assignment): a shard's
        // weights of a step never change within its run, so a rank that already has them from
        // this shard's broadcast of the same step to the previous assignment (its new welcome
        // overtook that broadcast, which came on another connection) computed exactly what
        // the pending broadcast would make it compute. Taken; without such a broadcast the
        // rank cannot have this shard's weights.
        let ahead = broadcastPending != nil
        guard !ahead || broadcastSent?.step == step else {
            throw PushRejection.badState("gradient for step \(oneBased(step)) before this shard sent its weights")
        }
        // A re-issued node's second copy (the owner's or the helper's) repeats the first: quiet.
        let isCopy = copies.isCopy(push.chunks, from: rank)
        guard summed == nil else {   // every node of the step is in: this is a repeat
            if isCopy { return nil }
            throw PushRejection.duplicatePart(part: push.part, parts: push.parts, step: push.step)
        }
        // Only a node of the sender's own block, or one re-issued to it: the nodes of different
        // ranks never overlap, so one worker can neither take another's chunks nor crash the
        // shard with its numbers.
        guard let chunks = push.chunks, nodesOfRank[rank].contains(chunks) || copies.isHelper(rank, of: chunks) else {
            throw PushRejection.notItsChunks(begin: push.chunkBegin, end: push.chunkEnd)
        }
        guard !nodes.contains(where: { $0.chunks == chunks }) else {
            if isCopy { return nil }
            throw PushRejection.duplicatePart(part: push.part, parts: push.parts, step: push.step)
        }
        let parts = max(1, Int(push.parts)), part = Int(push.part)   // parts 0 is read as 1
        guard parts == pieces.count, part < parts else {
            throw PushRejection.badState("part \(push.part) of \(push.parts): this shard takes each node's gradient in \(pieces.count) piece(s)")
        }
        let piece = pieces[part], range = update.range
        guard push.offset == UInt64(piece.lowerBound) else {
            throw PushRejection.badState("gradient for elements from \(push.offset), part \(part) of this shard's range \(range.lowerBound)..<\(range.upperBound) starts at \(piece.lowerBound)")
        }
        let index = partial.firstIndex { $0.chunks == chunks } ?? {
            partial.append((chunks, buffer(), PartCoverage(count: range.count, maximumParts: pieces.count)))
            return partial.count - 1
        }()
        let elements = (piece.lowerBound - range.lowerBound)..<(piece.upperBound - range.lowerBound)
        if let problem = partial[index].parts.problem(part: UInt32(part), parts: UInt32(parts), step: push.step)
            ?? partial[index].parts.problem(elements: elements, step: push.step) {
            if isCopy, problem.isRepeat { return nil }   // the other copy brought this piece first
            throw problem
        }
        try copy(push, into: index, piece: piece)
        if ahead { sentTo.insert(rank) }
        guard let whole = partial[index].parts.record(part: UInt32(part), parts: UInt32(parts), elements: elements) else { return nil }
        precondition(whole, "the pieces of a range tile it")
        let values = partial.remove(at: index).values
        nodes.append((chunks, values))
        return nodes.map(\.chunks.count).reduce(0, +) == chunkCount ? sumNodes() : nil
    }

    /// The piece's values into node `index`'s buffer; a refused first piece gives the buffer back.
    private func copy(_ push: DecodedGradientPush, into index: Int, piece: Range<Int>) throws {
        let base = update.range.lowerBound
        let target = UnsafeMutableBufferPointer(rebasing: partial[index].values[(piece.lowerBound - base)..<(piece.upperBound - base)])
        func drop(_ rejection: PushRejection) -> PushRejection {
            if partial[index].parts.isEmpty { spare.append(partial.remove(at: index).values) }
            return rejection
        }
        do {
            try push.tensors.copySlab(into: target)
        } catch let error as WireError {
            throw drop(.tensors(error))
        }
        guard target.isEmpty || allFinite(target.baseAddress!, count: target.count) else {
            throw drop(.gradientNotFinite(tensor: "slab"))
        }
    }

    /// Every node is in: their sum in the fixed tree, ÷ tokens; the norm blocks' Σg².
    private func sumNodes() -> [Double] {
        nodes.sort { $0.chunks.lowerBound < $1.chunks.lowerBound }
        let tree = ReductionTree(leaves: nodes.map(\.chunks), over: 0..<chunkCount)
        tree.sum(nodes.map { $0.values.baseAddress! }, count: update.range.count, threads: 1)
        summed = nodes[0].values
        return update.prepare(nodes[0].values, tokenCount: tokensPerStep)
    }
}

extension ShardRun {
    /// The run a coordinator's setup describes, every size checked before anything is built
    /// from it; a setup that does not make one throws `protocolViolation` (refused, the shard
    /// goes on).
    static func make(from setup: ShardSetup) throws -> (ShardRun, ParameterLayout) {
        let config: TrainingConfig
        do { config = try TrainingConfig.fromJSON(setup.runConfig) } catch {
            throw ClusterError.protocolViolation("shard setup with an unreadable run config: \(error)")
        }
        // V of Unicode's scalars at most, and a label count exactly when the run is a
        // classifier (bounded as checkpoints bound it).
        guard setup.vocabularySize >= 1, setup.vocabularySize <= 0x110000,
              (setup.labelCount > 0) == config.isClassifier, setup.labelCount <= 1 << 20, (try? config.validate()) != nil else {
            throw ClusterError.protocolViolation("shard setup with vocabulary size \(setup.vocabularySize) and \(setup.labelCount) labels for a \(config.isClassifier ? "classifier" : "language model")")
        }
        let labels = setup.labelCount > 0 ? Int(setup.labelCount) : nil
        let layout = ParameterLayout(config.model(vocabularySize: Int(setup.vocabularySize), labelCount: labels))
        let count = Int(setup.shardCount), shard = Int(setup.shard)
        guard count >= 1, shard < count, count <= SlabPartition.maximumShards(layout) else {
            throw ClusterError.protocolViolation("shard setup for shard \(shard) of \(count)")
        }
        let partition = SlabPartition(layout: layout, shards: count)
        let range = partition.shards[shard]
        guard setup.parameters.values.count == range.count, setup.workerCount >= 1 else {
            throw ClusterError.protocolViolation("shard setup with \(setup.parameters.values.count) weights for a range of \(range.count)")
        }
        let update = RangeUpdate(range: range, blocks: Array(partition.blocks[partition.shardBlocks[shard]]),
                                 optimizer: config.optimizer, schedule: config.schedule, clip: config.clip,
                                 initial: setup.parameters.values[...])
        do {
            try update.optimizer.restore(stepCount: Int(setup.optimizerSteps),
                                         buffers: setup.optimizerState.map { ($0.name, $0.values) })
        } catch {
            throw ClusterError.protocolViolation("shard setup: optimizer state: \(error)")
        }
        let run = ShardRun(shard: shard, update: update, workerCount: Int(setup.workerCount),
                           chunkCount: config.streams / config.chunkStreams, tokensPerStep: config.predictionsPerStep,
                           earlyFrom: config.earlyElements(of: layout), step: setup.step)
        return (run, layout)
    }
}
