/// Owned carried state of N streams: h, and c for LSTM, each (L, N, H), zero at creation.
public final class RecurrentState<S: KernelScalar> {
    public let config: ModelConfig
    public let streamCount: Int
    public let h: UnsafeMutablePointer<S>
    public let c: UnsafeMutablePointer<S>?

    public init(config: ModelConfig, streams: Int) {
        self.config = config
        self.streamCount = streams
        let count = config.layerCount * streams * config.hiddenSize
        h = .allocate(capacity: count)
        h.initialize(repeating: 0, count: count)
        if config.cell.hasCellState {
            let c = UnsafeMutablePointer<S>.allocate(capacity: count)
            c.initialize(repeating: 0, count: count)
            self.c = c
        } else {
            c = nil
        }
    }

    deinit {
        h.deallocate()
        c?.deallocate()
    }

    /// Scalars in each of h and c: L·N·H.
    public var count: Int { config.layerCount * streamCount * config.hiddenSize }

    /// A view of the whole state (rows = all N streams).
    public var view: StateView<S> { StateView(h: h, c: c, layerStride: streamCount * config.hiddenSize) }

    /// A view of streams starting at `row`.
    public func view(from row: Int) -> StateView<S> { view.rows(from: row, hiddenSize: config.hiddenSize) }

    public func reset() {
        h.update(repeating: 0, count: count)
        c?.update(repeating: 0, count: count)
    }
}
