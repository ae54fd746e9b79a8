/// Many-to-one classifier: forward and full BPTT of stacked (optionally bidirectional)
/// RNN/LSTM/GRU layers over up to n examples of variable length ≤ T, read once per example
/// by a linear head of C = labelCount logits (the final h, or the mean of the top layer's
/// outputs: `config.pooling`), on one thread (callers parallelise over workspaces, as with
/// `RecurrentNetwork`).
///
/// Dimensions: n capacity, T maxLength, V vocabulary, H hidden, L layers, G gate blocks,
/// D directions (2 bidirectional), C labels, R = Σ lengths of the call (≤ n·T) packed rows.
///
/// Layout (PyTorch's PackedSequence): the call's examples are ordered by length, longest
/// first (stable; `order`/`rank`), and every per-position buffer is packed time-major: the
/// row of sorted example i at position t is `rowStart[t] + i`, present while
/// i < `batchSizes[t]` (the examples still running are a prefix). No padding row exists, so
/// the layer-0 input is a row gather of W_ihᵀ, the upper layers' input products are one
/// `rowProduct` over the R rows, each time step of each direction is one `rowProduct` over
/// its active rows, and the weight gradients are GEMMs over the R rows.
///
/// Exactness: every product on the forward path is a `rowProduct` (per-row results whose bits
/// do not depend on m or the other rows), activations run per row, and zero initial state
/// means a row with no previous step simply skips the recurrent product. So an example's
/// logits and loss do not depend on the other examples of the call nor on its position,
/// and nothing beyond `lengths[b]` is read.
///
/// Memory per workspace ≈ s·n·T·(L·(D·H + D·(G·H + LSTM?2H + GRU?H)) + D·G·H + (GRU?G·H) + D·H + H)
/// bytes (s = 4 Float, 8 Double), plus the prepared weights (≈ 2× the parameters) and
/// 2·V·G·H·s for the layer-0 transposes.
public final class SequenceClassifier<S: KernelScalar> {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// Most examples per call, n.
    public let capacity: Int
    /// Longest sequence, T.
    public let maxLength: Int

    /// (capacity, maxLength) symbol ids in 0..<V; row b = example b, only its first lengths[b] read.
    public let inputs: UnsafeMutablePointer<Int32>
    /// (capacity) lengths, each in 1...maxLength.
    public let lengths: UnsafeMutablePointer<Int32>
    /// (capacity) class indices in 0..<labelCount, read by forward for the loss.
    public let labels: UnsafeMutablePointer<Int32>
    /// (capacity) cross-entropy in nats of each example, set by forward.
    public let exampleLoss: UnsafeMutablePointer<Double>

    // Packing of the last forward.
    let order: UnsafeMutablePointer<Int>      // (n) sorted index i → example b
    let rank: UnsafeMutablePointer<Int>       // (n) example b → sorted index i
    let batchSizes: UnsafeMutablePointer<Int> // (T) active examples at position t
    let rowStart: UnsafeMutablePointer<Int>   // (T + 1) first packed row of position t
    let lengthCount: UnsafeMutablePointer<Int> // (T + 2) counting-sort scratch
    var count = 0, steps = 0, rows = 0        // examples, longest length, R of the last forward

    // Per layer (index l) or per layer and direction (index l·D + d), packed rows.
    let outputs: [UnsafeMutablePointer<S>]    // [l] (n·T, D·H): [forward h | reverse h] of each row
    let gates: [UnsafeMutablePointer<S>]      // [l·D+d] (n·T, G·H) activated gates (RNN: pre-activation)
    let cs: [UnsafeMutablePointer<S>]         // [l·D+d] (n·T, H) LSTM cell state after the row's step
    let tanhC: [UnsafeMutablePointer<S>]      // [l·D+d] (n·T, H) LSTM tanh(c)
    let hiddenN: [UnsafeMutablePointer<S>]    // [l·D+d] (n·T, H) GRU W_hn·h' + b_hn

    let dGates: [UnsafeMutablePointer<S>]     // [d] (n·T, G·H) pre-activation grads (GRU: x-side) of one layer
    let dGatesH: UnsafeMutablePointer<S>?     // (n·T, G·H) GRU h-side pre-activation grads, one direction
    let dH: UnsafeMutablePointer<S>           // (n·T, D·H) grad w.r.t. a layer's outputs, aligned with outputs
    let previousH: UnsafeMutablePointer<S>    // (n·T, H) h before each row's step (0 at a start), for dW_hh
    let dHNext: UnsafeMutablePointer<S>       // (n, H) recurrent grad, by sorted index
    let dCNext: UnsafeMutablePointer<S>       // (n, H) LSTM cell grad, by sorted index
    let stepH: UnsafeMutablePointer<S>        // (n, G·H) GRU h-side product of one step
    let zeros: UnsafeMutablePointer<S>        // (max(G·H, D·H)) the zero initial state's row

    let features: UnsafeMutablePointer<S>    // (n, D·H) head input, by example b
    let logitRows: UnsafeMutablePointer<S>   // (n, C) raw logits, by example b
    let probabilityRows: UnsafeMutablePointer<S> // (n, C) softmax; d loss/d logits after backward
    let dFeatures: UnsafeMutablePointer<S>   // (n, D·H)

    let inputWeightT: [UnsafeMutablePointer<S>] // [d] (V, G·H) layer-0 W_ihᵀ: one-hot product = row gather
    let dInputWeightT: UnsafeMutablePointer<S>  // (V, G·H) scatter target for layer-0 W_ih grads

    // Prepared weights ("forward" = x·Wᵀ, "backward" = d·W), index l·D + d.
    let hiddenForward: [UnsafeMutablePointer<S>]   // W_hh, k = H, n = G·H
    let hiddenBackward: [UnsafeMutablePointer<S>]  // W_hh, k = G·H, n = H
    let inputForward: [UnsafeMutablePointer<S>]    // W_ih of layers > 0 (index (l−1)·D + d), k = D·H, n = G·H
    let inputBackward: [UnsafeMutablePointer<S>]   // k = G·H, n = D·H
    let headForward: UnsafeMutablePointer<S>       // head W, k = D·H, n = C

    let offsets: [LayerOffsets]                    // index l·D + d
    let headWeight: Int, headBias: Int
    let allocations: [UnsafeMutableRawPointer]

    struct LayerOffsets {
        var inputWeight: Int, hiddenWeight: Int, inputBias: Int, hiddenBias: Int?
    }

    public init(config: ModelConfig, capacity n: Int, maxLength T: Int) {
        precondition(config.labelCount != nil, "SequenceClassifier needs config.labelCount")
        precondition(n > 0 && T > 0)
        self.config = config
        self.layout = ParameterLayout(config)
        self.capacity = n
        self.maxLength = T
        let H = config.hiddenSize, V = config.vocabularySize, GH = config.cell.gateCount * H
        let L = config.layerCount, D = config.directions, DH = D * H, C = config.outputCount
        let cell = config.cell, R = n * T

        var allocations: [UnsafeMutableRawPointer] = []
        // 64-byte aligned, as RecurrentNetwork's: operands of the weight-gradient products.
        func buffer<E: Numeric>(_ count: Int, _: E.Type = E.self) -> UnsafeMutablePointer<E> {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<E>.stride, alignment: 64)
                .bindMemory(to: E.self, capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            allocations.append(UnsafeMutableRawPointer(p))
            return p
        }
        let LD = L * D
        inputs = buffer(n * T)
        lengths = buffer(n)
        labels = buffer(n)
        exampleLoss = buffer(n)
        order = buffer(n)
        rank = buffer(n)
        batchSizes = buffer(T)
        rowStart = buffer(T + 1)
        lengthCount = buffer(T + 2)
        outputs = (0..<L).map { _ in buffer(R * DH) }
        gates = (0..<LD).map { _ in buffer(R * GH) }
        cs = cell == .lstm ? (0..<LD).map { _ in buffer(R * H) } : []
        tanhC = cell == .lstm ? (0..<LD).map { _ in buffer(R * H) } : []
        hiddenN = cell == .gru ? (0..<LD).map { _ in buffer(R * H) } : []
        dGates = (0..<D).map { _ in buffer(R * GH) }
        dGatesH = cell == .gru ? buffer(R * GH) : nil
        dH = buffer(R * DH)
        previousH = buffer(R * H)
        dHNext = buffer(n * H)
        dCNext = buffer(n * H)
        stepH = buffer(cell == .gru ? n * GH : 1)
        zeros = buffer(max(GH, DH))
        features = buffer(n * DH)
        logitRows = buffer(n * C)
        probabilityRows = buffer(n * C)
        dFeatures = buffer(n * DH)
        inputWeightT = (0..<D).map { _ in buffer(V * GH) }
        dInputWeightT = buffer(V * GH)
        hiddenForward = (0..<LD).map { _ in buffer(S.preparedCount(k: H, n: GH)) }
        hiddenBackward = (0..<LD).map { _ in buffer(S.preparedCount(k: GH, n: H)) }
        inputForward = (D..<LD).map { _ in buffer(S.preparedCount(k: DH, n: GH)) }
        inputBackward = (D..<LD).map { _ in buffer(S.preparedCount(k: GH, n: DH)) }
        headForward = buffer(S.preparedCount(k: DH, n: C))
        self.allocations = allocations

        let layout = self.layout
        offsets = (0..<LD).map { ld in
            let (l, d) = (ld / D, ld % D)
            return LayerOffsets(inputWeight: layout.slice(.inputWeight, layer: l, direction: d)!.offset,
                                hiddenWeight: layout.slice(.recurrentWeight, layer: l, direction: d)!.offset,
                                inputBias: layout.slice(.inputBias, layer: l, direction: d)!.offset,
                                hiddenBias: layout.slice(.recurrentBias, layer: l, direction: d)?.offset)
        }
        headWeight = layout.slice(.headWeight)!.offset
        headBias = layout.slice(.headBias)!.offset
    }

    deinit { for p in allocations { p.deallocate() } }

    // MARK: Packing

    /// Stable counting sort of examples 0..<count by length, longest first, and the packed
    /// geometry (batchSizes, rowStart) of the call.
    private func pack(count: Int) {
        let T = maxLength
        lengthCount.update(repeating: 0, count: T + 2)
        var longest = 0
        for b in 0..<count {
            let len = Int(lengths[b])
            precondition(len >= 1 && len <= T, "length \(len) of example \(b) outside 1...\(T)")
            lengthCount[len] += 1
            longest = max(longest, len)
        }
        // Start index of each length, longest first.
        var start = 0
        for len in stride(from: T, through: 1, by: -1) {
            let c = lengthCount[len]
            lengthCount[len] = start
            start += c
        }
        for b in 0..<count {
            let len = Int(lengths[b])
            let i = lengthCount[len]
            lengthCount[len] += 1
            order[i] = b
            rank[b] = i
        }
        var active = count, row = 0
        for t in 0..<longest {
            while active > 0 && Int(lengths[order[active - 1]]) <= t { active -= 1 }
            batchSizes[t] = active
            rowStart[t] = row
            row += active
        }
        rowStart[longest] = row
        self.count = count
        self.steps = longest
        self.rows = row
    }

    /// The rows holding the state before step t of direction d: (first row, how many of the
    /// active prefix have one). The others start from the zero state.
    @inline(__always)
    func previous(direction d: Int, step t: Int) -> (row: Int, count: Int) {
        if d == 0 { return t > 0 ? (rowStart[t - 1], batchSizes[t]) : (0, 0) }
        return t + 1 < steps ? (rowStart[t + 1], batchSizes[t + 1]) : (0, 0)
    }

    // MARK: Forward

    /// Forward of examples 0..<count (count ≤ capacity) from zero initial state; returns Σ exampleLoss.
    /// weightsUnchanged: same parameters as the previous forward of this workspace (evaluation, prediction), reuse prepared weights.
    @discardableResult
    public func forward(parameters w: UnsafePointer<S>, count: Int, weightsUnchanged: Bool = false) -> Double {
        precondition(count >= 1 && count <= capacity)
        let H = config.hiddenSize, V = config.vocabularySize, L = config.layerCount
        let D = config.directions, DH = D * H, GH = config.cell.gateCount * H, C = config.outputCount
        if !weightsUnchanged {
            for ld in 0..<(L * D) {
                S.prepare(hiddenForward[ld], weight: w + offsets[ld].hiddenWeight, k: H, n: GH, transposed: true)
                if ld >= D { S.prepare(inputForward[ld - D], weight: w + offsets[ld].inputWeight, k: DH, n: GH, transposed: true) }
            }
            for d in 0..<D {
                let wih = w + offsets[d].inputWeight, wt = inputWeightT[d]
                for r in 0..<GH {
                    for v in 0..<V { wt[v * GH + r] = wih[r * V + v] }
                }
            }
            S.prepare(headForward, weight: w + headWeight, k: DH, n: C, transposed: true)
        }
        pack(count: count)

        for l in 0..<L {
            for d in 0..<D {
                inputProduct(layer: l, direction: d, w)
                switch config.cell {
                case .rnn: rnnForward(layer: l, direction: d)
                case .lstm: lstmForward(layer: l, direction: d)
                case .gru: gruForward(layer: l, direction: d, w)
                }
            }
        }

        // Feature of example b: top forward h after its last position, reverse h after
        // position 0; or the mean of its top rows, summed in position order (exact per example).
        let top = outputs[L - 1]
        for b in 0..<count {
            let i = rank[b], length = Int(lengths[b]), feature = features + b * DH
            switch config.pooling {
            case .last:
                feature.update(from: top + (rowStart[length - 1] + i) * DH, count: H)
                if D == 2 { (feature + H).update(from: top + i * DH + H, count: H) }
            case .mean:
                feature.update(from: top + i * DH, count: DH)
                for t in 1..<length {
                    let row = top + (rowStart[t] + i) * DH
                    for j in 0..<DH { feature[j] += row[j] }
                }
                let scale = 1 / S(length)
                for j in 0..<DH { feature[j] *= scale }
            }
        }
        S.rowProduct(m: count, n: C, k: DH, a: features, lda: DH, prepared: headForward,
                     accumulate: false, c: logitRows, ldc: C)
        let bias = w + headBias
        var total = 0.0
        for b in 0..<count {
            let label = Int(labels[b])
            precondition(label >= 0 && label < C, "label \(label) of example \(b) outside 0..<\(C)")
            let logit = logitRows + b * C, p = probabilityRows + b * C
            for j in 0..<C { logit[j] += bias[j] }
            exampleLoss[b] = softmaxCrossEntropy(logit, into: p, label: label)
            total += exampleLoss[b]
        }
        return total
    }

    /// x-side pre-activations (bias_ih included) of every packed row: layer 0 gathers rows
    /// of W_ihᵀ (one-hot input), upper layers do one product over all R rows of the layer below.
    private func inputProduct(layer l: Int, direction d: Int, _ w: UnsafePointer<S>) {
        let H = config.hiddenSize, GH = config.cell.gateCount * H, DH = config.directions * H
        let ld = l * config.directions + d
        let g = gates[ld], bias = w + offsets[ld].inputBias
        if l == 0 {
            let T = maxLength, wt = inputWeightT[d]
            for t in 0..<steps {
                let row0 = rowStart[t]
                for i in 0..<batchSizes[t] {
                    let row = g + (row0 + i) * GH
                    let src = wt + Int(inputs[order[i] * T + t]) * GH
                    for j in 0..<GH { row[j] = src[j] + bias[j] }
                }
            }
        } else {
            S.rowProduct(m: rows, n: GH, k: DH, a: outputs[l - 1], lda: DH, prepared: inputForward[ld - config.directions],
                         accumulate: false, c: g, ldc: GH)
            for r in 0..<rows {
                let row = g + r * GH
                for j in 0..<GH { row[j] += bias[j] }
            }
        }
    }

    /// Writes softmax(logit) into p and returns −log p[label] in nats (log-sum in Double).
    @inline(__always)
    private func softmaxCrossEntropy(_ logit: UnsafePointer<S>, into p: UnsafeMutablePointer<S>, label: Int) -> Double {
        let C = config.outputCount
        var maxValue = -S.infinity
        for j in 0..<C where logit[j] > maxValue { maxValue = logit[j] }
        for j in 0..<C { p[j] = logit[j] - maxValue }
        let labelLogit = Double(p[label])
        S.exp(p, count: C)
        var sum = 0.0
        for j in 0..<C { sum += Double(p[j]) }
        let scale = S(1 / sum)
        for j in 0..<C { p[j] *= scale }
        return S.logarithm(sum) - labelLogit
    }

    /// (labelCount) the head's raw logits (bias included) of example b after forward.
    public func logits(example b: Int) -> UnsafeBufferPointer<S> {
        UnsafeBufferPointer(start: logitRows + b * config.outputCount, count: config.outputCount)
    }

    /// (labelCount) softmax probabilities of example b after forward (valid until backward).
    public func probabilities(example b: Int) -> UnsafeBufferPointer<S> {
        UnsafeBufferPointer(start: probabilityRows + b * config.outputCount, count: config.outputCount)
    }
}
