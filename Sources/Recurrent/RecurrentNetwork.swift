/// Forward and backward (truncated BPTT) of a stacked RNN/LSTM/GRU character model over a
/// window of T steps for n streams, on one thread. Callers parallelise over streams: each
/// thread owns one `RecurrentNetwork` (its workspace) and reads the shared parameter slab.
///
/// Dimensions: n streams, T window, P = T+1 stored time slots, V vocabulary, H hidden,
/// L layers, G gate blocks (RNN 1, GRU 3, LSTM 4).
///
/// Layout: every activation buffer is stream-major with P slots per stream, so that the
/// rows of any block of streams are contiguous. Slot 0 of `hs` holds h0 and slot t+1 holds
/// the output of step t; gate buffers use slots 0..<T and leave slot T as padding. With
/// that padding, "gates of step t" and "input of step t" sit at the same row, so the
/// x-side product, the head and every weight gradient are single large GEMMs over n·P rows
/// (1/P of them padding: junk on the forward side, exact zeros on the backward side), and
/// only the h-side product stays inside the time loop.
///
/// Memory per workspace ≈ 4·n·P·(L·(2+G+LSTM?2:0+GRU?1:0)·H + 2·G·H + V) bytes for Float,
/// plus 4·n·P·2·L·H with dropout (the masks and the dropped outputs).
///
/// Dropout (`Dropout`) acts on each layer's output where the layer above or the head reads
/// it: forward reads `output(l)` = hs[l] ⊙ mask[l] there, backward multiplies the gradient
/// arriving from that consumer by the same mask before the layer's own BPTT.
public final class RecurrentNetwork<S: KernelScalar> {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// Streams held by this workspace (rows of every call).
    public let streamCount: Int
    /// The BPTT window T.
    public let window: Int

    /// (n, T) input symbol ids of the current window; the caller fills it before `forward`.
    public let inputs: UnsafeMutablePointer<Int32>
    /// (n, T) target symbol ids (inputs shifted by one).
    public let targets: UnsafeMutablePointer<Int32>
    /// (n) summed cross-entropy (nats) of each stream over the window, set by `forward`.
    public let streamLoss: UnsafeMutablePointer<Double>

    // Per layer, stream-major with P slots (see the header).
    let hs: [UnsafeMutablePointer<S>]      // (n·P + 1, H); the extra row keeps shifted GEMMs in bounds
    let cs: [UnsafeMutablePointer<S>]      // (n·P, H) LSTM cell state, slot 0 = c0
    let tanhC: [UnsafeMutablePointer<S>]   // (n, T, H) LSTM tanh(c_t)
    let gates: [UnsafeMutablePointer<S>]   // (n·P, G·H) activated gates (RNN: pre-activation)
    let hiddenN: [UnsafeMutablePointer<S>] // (n, T, H) GRU W_hn·h' + b_hn
    let masks: [UnsafeMutablePointer<S>]   // (n·P + 1, H) dropout masks aligned with hs (0 or 1/(1−p)); slot-0 rows 0
    let dropped: [UnsafeMutablePointer<S>] // (n·P + 1, H) hs ⊙ mask, what the consumer reads

    let logits: UnsafeMutablePointer<S>    // (n·P, V) probabilities after forward
    let dGates: UnsafeMutablePointer<S>    // (n·P, G·H) pre-activation grads (GRU: x-side); slot T stays 0
    let dGatesH: UnsafeMutablePointer<S>?  // (n·P, G·H) GRU h-side pre-activation grads; slot T stays 0
    let dH: UnsafeMutablePointer<S>        // (n·P + 1, H) grad w.r.t. a layer's outputs, aligned with hs
    let dHNext: UnsafeMutablePointer<S>    // (n, H) recurrent grad flowing to step t-1
    let dCNext: UnsafeMutablePointer<S>    // (n, H) LSTM cell grad flowing to step t-1
    let stepH: UnsafeMutablePointer<S>     // (n, G·H) GRU h-side product of one step
    let inputWeightT: UnsafeMutablePointer<S>  // (V, G·H) layer-0 W_ih transposed: one-hot product = row gather
    let dInputWeightT: UnsafeMutablePointer<S> // (V, G·H) scatter target for layer-0 W_ih grads

    // Weights prepared once per call for the row-wise products (`S.rowProduct`):
    // "forward" = x·Wᵀ (input → gates), "backward" = d·W (gate grads → input grads).
    let hiddenForward: [UnsafeMutablePointer<S>]   // W_hh, k = H, n = G·H
    let hiddenBackward: [UnsafeMutablePointer<S>]  // W_hh, k = G·H, n = H
    let inputForward: [UnsafeMutablePointer<S>]    // W_ih of layers > 0 (index l−1)
    let inputBackward: [UnsafeMutablePointer<S>]
    let headForward: UnsafeMutablePointer<S>       // head W, k = H, n = V
    let headBackward: UnsafeMutablePointer<S>      // head W, k = V, n = H

    let offsets: [LayerOffsets]
    let headWeight: Int, headBias: Int
    let allocations: [UnsafeMutableRawPointer]

    struct LayerOffsets {
        var inputWeight: Int, hiddenWeight: Int, inputBias: Int, hiddenBias: Int?
    }

    /// With `dropout`, a forward with `dropoutPosition` set drops units; without a position
    /// (evaluation, sampling) it does not.
    public let dropout: Dropout?
    /// The global step and first stream of the next forward, which key the masks; nil = no
    /// dropout (set before `forward`, kept for the matching `backward`).
    public var dropoutPosition: Dropout.Position?
    private(set) var dropoutActive = false

    public init(config: ModelConfig, streams n: Int, window T: Int, dropout: Dropout? = nil) {
        precondition(n > 0 && T > 0)
        self.config = config
        self.dropout = dropout
        self.layout = ParameterLayout(config)
        self.streamCount = n
        self.window = T
        let P = T + 1, H = config.hiddenSize, V = config.vocabularySize
        let GH = config.cell.gateCount * H, L = config.layerCount
        let cell = config.cell

        var allocations: [UnsafeMutableRawPointer] = []
        // 64-byte (cache-line) aligned: dGates, hs and the outputs are the A and B operands of the
        // weight-gradient products, whose kernels copy them in pieces of 24 to 128 bytes; at
        // malloc's 16 bytes past a line (every large block) more of those straddle lines. C harness,
        // AVX-512 on Zen 4, the LSTM/GRU H = 256/512 dW products: A, B and C aligned 1-6% faster
        // (median 4%) than all three at +16 bytes; OpenBLAS 0-1%. Layout only: the same bits.
        func buffer<E: Numeric>(_ count: Int, _: E.Type = E.self) -> UnsafeMutablePointer<E> {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<E>.stride, alignment: 64)
                .bindMemory(to: E.self, capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            allocations.append(UnsafeMutableRawPointer(p))
            return p
        }
        inputs = buffer(n * T)
        targets = buffer(n * T)
        streamLoss = buffer(n)
        hs = (0..<L).map { _ in buffer(n * P * H + H) }
        cs = cell == .lstm ? (0..<L).map { _ in buffer(n * P * H) } : []
        tanhC = cell == .lstm ? (0..<L).map { _ in buffer(n * T * H) } : []
        gates = (0..<L).map { _ in buffer(n * P * GH) }
        hiddenN = cell == .gru ? (0..<L).map { _ in buffer(n * T * H) } : []
        masks = dropout == nil ? [] : (0..<L).map { _ in buffer(n * P * H + H) }
        dropped = dropout == nil ? [] : (0..<L).map { _ in buffer(n * P * H + H) }
        logits = buffer(n * P * V)
        dGates = buffer(n * P * GH)
        dGatesH = cell == .gru ? buffer(n * P * GH) : nil
        dH = buffer(n * P * H + H)
        dHNext = buffer(n * H)
        dCNext = buffer(n * H)
        stepH = buffer(cell == .gru ? n * GH : 1)
        inputWeightT = buffer(V * GH)
        dInputWeightT = buffer(V * GH)
        hiddenForward = (0..<L).map { _ in buffer(S.preparedCount(k: H, n: GH)) }
        hiddenBackward = (0..<L).map { _ in buffer(S.preparedCount(k: GH, n: H)) }
        inputForward = (1..<max(L, 1)).map { _ in buffer(S.preparedCount(k: H, n: GH)) }
        inputBackward = (1..<max(L, 1)).map { _ in buffer(S.preparedCount(k: GH, n: H)) }
        headForward = buffer(S.preparedCount(k: H, n: V))
        headBackward = buffer(S.preparedCount(k: V, n: H))
        self.allocations = allocations

        let layout = self.layout
        offsets = (0..<L).map { l in
            LayerOffsets(inputWeight: layout.slice(.inputWeight, layer: l)!.offset,
                         hiddenWeight: layout.slice(.recurrentWeight, layer: l)!.offset,
                         inputBias: layout.slice(.inputBias, layer: l)!.offset,
                         hiddenBias: layout.slice(.recurrentBias, layer: l)?.offset)
        }
        headWeight = layout.slice(.headWeight)!.offset
        headBias = layout.slice(.headBias)!.offset
    }

    deinit { for p in allocations { p.deallocate() } }

    /// Layer l's output as its consumer (layer l+1 or the head) reads it, aligned with hs.
    @inline(__always)
    func output(_ l: Int) -> UnsafeMutablePointer<S> { dropoutActive ? dropped[l] : hs[l] }

    /// Draws layer l's masks for every real slot and writes hs ⊙ mask.
    private func applyDropout(layer l: Int) {
        guard let dropout, let position = dropoutPosition else { return }
        let n = streamCount, T = window, P = T + 1, H = config.hiddenSize
        let h = hs[l], mask = masks[l], out = dropped[l]
        for b in 0..<n {
            for t in 0..<T {
                let row = (b * P + t + 1) * H
                dropout.fill(mask + row, count: H, step: position.step, stream: position.firstStream + b, layer: l, time: t)
                for j in 0..<H { out[row + j] = h[row + j] * mask[row + j] }
            }
        }
    }

    /// The gradient arriving at layer l's output from its consumer, times layer l's mask.
    func maskGradient(layer l: Int) {
        guard dropoutActive else { return }
        let rows = streamCount * (window + 1) + 1, H = config.hiddenSize
        let mask = masks[l]
        for i in 0..<(rows * H) { dH[i] *= mask[i] }
    }

    // MARK: Forward

    /// Runs the window from `initialState` (rows 0..<n of the view) and returns the summed
    /// cross-entropy over all n·T predictions. Per-stream sums land in `streamLoss`.
    /// `weightsUnchanged`: the same parameters as the previous forward of this workspace
    /// (evaluation, sampling), so the prepared weights are reused.
    @discardableResult
    public func forward(parameters w: UnsafePointer<S>, initialState: StateView<S>, weightsUnchanged: Bool = false) -> Double {
        let n = streamCount, T = window, P = T + 1
        let H = config.hiddenSize, V = config.vocabularySize, L = config.layerCount
        precondition(config.cell != .lstm || initialState.c != nil, "LSTM needs a cell state")
        let GH = config.cell.gateCount * H
        dropoutActive = dropout != nil && dropoutPosition != nil
        if !weightsUnchanged {
            for l in 0..<L {
                S.prepare(hiddenForward[l], weight: w + offsets[l].hiddenWeight, k: H, n: GH, transposed: true)
                if l > 0 { S.prepare(inputForward[l - 1], weight: w + offsets[l].inputWeight, k: H, n: GH, transposed: true) }
            }
            S.prepare(headForward, weight: w + headWeight, k: H, n: V, transposed: true)
        }

        for l in 0..<L {
            let h = hs[l]
            for b in 0..<n {
                (h + b * P * H).update(from: initialState.h + l * initialState.layerStride + b * H, count: H)
                if config.cell == .lstm, let c0 = initialState.c {
                    (cs[l] + b * P * H).update(from: c0 + l * initialState.layerStride + b * H, count: H)
                }
            }
            inputProduct(layer: l, w, weightsUnchanged: weightsUnchanged)
            switch config.cell {
            case .rnn: rnnForward(layer: l, w)
            case .lstm: lstmForward(layer: l, w)
            case .gru: gruForward(layer: l, w)
            }
            if dropoutActive { applyDropout(layer: l) }
        }

        // Head over every slot at once: logits row (b, t) from the top output's row (b, t+1).
        S.rowProduct(m: n * P, n: V, k: H, a: output(L - 1) + H, lda: H, prepared: headForward,
                     accumulate: false, c: logits, ldc: V)
        var total = 0.0
        for b in 0..<n {
            var streamSum = 0.0
            for t in 0..<T {
                streamSum += softmaxCrossEntropy(row: logits + (b * P + t) * V, bias: w + headBias,
                                                 target: Int(targets[b * T + t]))
            }
            streamLoss[b] = streamSum
            total += streamSum
        }
        return total
    }

    /// x-side pre-activations of every step: layer 0 gathers rows of W_ih^T (one-hot input),
    /// upper layers do one GEMM over all n·P slots of the layer below.
    private func inputProduct(layer l: Int, _ w: UnsafePointer<S>, weightsUnchanged: Bool) {
        let n = streamCount, T = window, P = T + 1
        let H = config.hiddenSize, V = config.vocabularySize, GH = config.cell.gateCount * H
        let g = gates[l], bias = w + offsets[l].inputBias, wih = w + offsets[l].inputWeight
        if l == 0 {
            if !weightsUnchanged {
                for r in 0..<GH {
                    for v in 0..<V { inputWeightT[v * GH + r] = wih[r * V + v] }
                }
            }
            for b in 0..<n {
                for t in 0..<T {
                    let row = g + (b * P + t) * GH
                    let src = inputWeightT + Int(inputs[b * T + t]) * GH
                    for j in 0..<GH { row[j] = src[j] + bias[j] }
                }
            }
        } else {
            S.rowProduct(m: n * P, n: GH, k: H, a: output(l - 1) + H, lda: H, prepared: inputForward[l - 1],
                         accumulate: false, c: g, ldc: GH)
            for r in 0..<(n * P) {
                let row = g + r * GH
                for j in 0..<GH { row[j] += bias[j] }
            }
        }
    }

    /// Adds the head bias, turns the row into probabilities in place and returns
    /// -log p(target) in nats (computed in Double).
    @inline(__always)
    private func softmaxCrossEntropy(row: UnsafeMutablePointer<S>, bias: UnsafePointer<S>, target: Int) -> Double {
        let V = config.vocabularySize
        var maxValue = -S.infinity
        for j in 0..<V {
            row[j] += bias[j]
            if row[j] > maxValue { maxValue = row[j] }
        }
        for j in 0..<V { row[j] -= maxValue }
        let targetLogit = Double(row[target])
        S.exp(row, count: V)
        var sum = 0.0
        for j in 0..<V { sum += Double(row[j]) }
        let scale = S(1 / sum)
        for j in 0..<V { row[j] *= scale }
        return S.logarithm(sum) - targetLogit
    }

    /// The V next-symbol probabilities predicted at step t of stream b by the last `forward`
    /// (valid until `backward`, which turns them into logit gradients).
    public func probabilities(stream b: Int, step t: Int) -> UnsafeBufferPointer<S> {
        UnsafeBufferPointer(start: logits + (b * (window + 1) + t) * config.vocabularySize, count: config.vocabularySize)
    }

    /// Writes the hidden (and cell) state after the last step into rows 0..<n of `state`.
    public func copyFinalState(to state: StateView<S>) {
        let n = streamCount, P = window + 1, H = config.hiddenSize
        for l in 0..<config.layerCount {
            for b in 0..<n {
                (state.h + l * state.layerStride + b * H).update(from: hs[l] + (b * P + window) * H, count: H)
                if config.cell == .lstm, let c = state.c {
                    (c + l * state.layerStride + b * H).update(from: cs[l] + (b * P + window) * H, count: H)
                }
            }
        }
    }
}

/// Carried recurrent state of a block of streams for every layer: h (and c for LSTM),
/// each laid out (L, rows, H) with `layerStride` elements between layers.
public struct StateView<S> {
    public var h: UnsafeMutablePointer<S>
    public var c: UnsafeMutablePointer<S>?
    public var layerStride: Int

    public init(h: UnsafeMutablePointer<S>, c: UnsafeMutablePointer<S>?, layerStride: Int) {
        self.h = h
        self.c = c
        self.layerStride = layerStride
    }

    /// The view of rows starting at `row` (rows are `hiddenSize` apart).
    public func rows(from row: Int, hiddenSize: Int) -> StateView<S> {
        StateView(h: h + row * hiddenSize, c: c.map { $0 + row * hiddenSize }, layerStride: layerStride)
    }
}

/// A block of a workspace's streams whose weight gradients go to their own slab.
public struct GradientChunk<S> {
    public var streams: Range<Int>
    public var gradient: UnsafeMutablePointer<S>

    public init(streams: Range<Int>, gradient: UnsafeMutablePointer<S>) {
        self.streams = streams
        self.gradient = gradient
    }
}
