import Recurrent

/// Runs the core on a `CellProblem` in Float or Double and returns plain arrays.
public struct CoreResult<S: KernelScalar> {
    public var lossSum: Double
    public var gradient: [S]
    public var initialHGradient: [S]   // (L, N, H)
    public var initialCGradient: [S]   // (L, N, H), LSTM only
    public var finalH: [S]
    public var finalC: [S]
}

public enum CoreRunner {
    /// One forward + backward over the whole problem with the given gradient chunks
    /// (default: one chunk of all streams). `parameters` overrides the problem's. With
    /// `dropout` and `position`, the masks of that position (fixed: the same for every call).
    public static func run<S: KernelScalar>(_ problem: CellProblem, as _: S.Type,
                                            parameters: [S]? = nil,
                                            h0: [S]? = nil, c0: [S]? = nil,
                                            chunkStreams: [Range<Int>]? = nil,
                                            dropout: Dropout? = nil, position: Dropout.Position? = nil,
                                            backward: Bool = true) -> CoreResult<S> {
        let config = problem.config, N = problem.streams, T = problem.window
        let net = RecurrentNetwork<S>(config: config, streams: N, window: T, dropout: dropout)
        net.dropoutPosition = position
        for s in 0..<N {
            for t in 0..<T {
                net.inputs[s * T + t] = Int32(problem.inputs[s][t])
                net.targets[s * T + t] = Int32(problem.targets[s][t])
            }
        }
        let w = parameters ?? problem.parameters.map { S($0) }
        let state = RecurrentState<S>(config: config, streams: N)
        let h0 = h0 ?? problem.h0.map { S($0) }, c0 = c0 ?? problem.c0.map { S($0) }
        for i in 0..<state.count { state.h[i] = h0[i] }
        if let c = state.c { for i in 0..<state.count { c[i] = c0[i] } }

        let chunks = chunkStreams ?? [0..<N]
        var grads = chunks.map { _ in [S](repeating: 0, count: net.layout.count) }
        let dState = RecurrentState<S>(config: config, streams: N)
        let loss = w.withUnsafeBufferPointer { wp -> Double in
            let loss = net.forward(parameters: wp.baseAddress!, initialState: state.view)
            if backward {
                var pointers: [UnsafeMutablePointer<S>] = []
                for i in grads.indices {
                    pointers.append(UnsafeMutablePointer<S>.allocate(capacity: net.layout.count))
                    pointers[i].initialize(repeating: 0, count: net.layout.count)
                }
                defer { pointers.forEach { $0.deallocate() } }
                net.backward(parameters: wp.baseAddress!,
                             chunks: zip(chunks, pointers).map { GradientChunk(streams: $0, gradient: $1) },
                             initialStateGradient: dState.view)
                for i in grads.indices { grads[i] = Array(UnsafeBufferPointer(start: pointers[i], count: net.layout.count)) }
            }
            return loss
        }
        let final = RecurrentState<S>(config: config, streams: N)
        net.copyFinalState(to: final.view)
        var total = [S](repeating: 0, count: net.layout.count)
        for g in grads { for i in total.indices { total[i] += g[i] } }
        return CoreResult(lossSum: loss, gradient: total,
                          initialHGradient: Array(UnsafeBufferPointer(start: dState.h, count: dState.count)),
                          initialCGradient: dState.c.map { Array(UnsafeBufferPointer(start: $0, count: dState.count)) } ?? [],
                          finalH: Array(UnsafeBufferPointer(start: final.h, count: final.count)),
                          finalC: final.c.map { Array(UnsafeBufferPointer(start: $0, count: final.count)) } ?? [])
    }

    /// Largest |a−b| over the tensor divided by the largest magnitude in either (torch-rnn's
    /// gradcheck measure); 0 when both are all zeros.
    public static func relativeError<S: BinaryFloatingPoint>(_ a: [S], _ b: [S]) -> Double {
        precondition(a.count == b.count)
        var diff = 0.0, scale = 0.0
        for i in a.indices {
            diff = max(diff, abs(Double(a[i]) - Double(b[i])))
            scale = max(scale, abs(Double(a[i])), abs(Double(b[i])))
        }
        return scale == 0 ? 0 : diff / scale
    }
}
