import Recurrent

/// Validation loss: mean cross-entropy per predicted character, in nats.
///
/// With E = 1 (the default) the split is one stream from zero state scored in windows of T
/// with the state carried, i.e. the plain per-character loss of the text. With E > 1 the
/// n−1 targets are cut into E contiguous segments of L = (n−1)/E, each from zero state, and
/// the < E leftover targets continue the last segment — every target counted once (the
/// same rule as the PyTorch reference's `evaluate`).
public enum Evaluator {
    /// A classifier's result (`ClassifierEvaluator`) counts examples: `natsPerCharacter` is
    /// then the mean loss per example and `characters` the examples scored.
    public struct Result: Equatable, Sendable {
        public var natsPerCharacter: Double
        public var bitsPerCharacter: Double { natsPerCharacter / 0.6931471805599453 }
        public var characters: Int
        /// Accuracy and the rest, for a classifier.
        public var classification: ClassificationMetrics?

        public init(natsPerCharacter: Double, characters: Int) {
            self.natsPerCharacter = natsPerCharacter
            self.characters = characters
        }
    }

    /// nil when there is nothing to predict (fewer than two tokens). `progress` hears the
    /// predictions scored so far (of n−1) after each window.
    public static func evaluate<Tokens: RandomAccessCollection>(model: ModelConfig, parameters: UnsafePointer<Float>, tokens: Tokens,
                                window T: Int, streams: Int = 1,
                                progress: ((Int) -> Void)? = nil) -> Result? where Tokens.Element == Int32, Tokens.Index == Int {
        let targetCount = tokens.count - 1
        guard targetCount >= 1 else { return nil }
        let E = max(1, min(streams, targetCount)), L = targetCount / E
        let state = RecurrentState<Float>(config: model, streams: E)
        var total = 0.0

        /// Scores columns [begin, begin+width) of every segment with a workspace of that width.
        func score(_ net: RecurrentNetwork<Float>, segments: Int, segmentLength: Int, origin: Int,
                   begin: Int, state: RecurrentState<Float>, weightsUnchanged: Bool = false) -> Double {
            let width = net.window
            for s in 0..<segments {
                for t in 0..<width {
                    let i = origin + s * segmentLength + begin + t
                    net.inputs[s * width + t] = tokens[tokens.startIndex + i]
                    net.targets[s * width + t] = tokens[tokens.startIndex + i + 1]
                }
            }
            let loss = net.forward(parameters: parameters, initialState: state.view, weightsUnchanged: weightsUnchanged)
            net.copyFinalState(to: state.view)
            return loss
        }

        let full = RecurrentNetwork<Float>(config: model, streams: E, window: min(T, L))
        var column = 0
        while column + full.window <= L {
            total += score(full, segments: E, segmentLength: L, origin: 0, begin: column, state: state,
                           weightsUnchanged: column > 0)   // one workspace: prepare its weights once
            column += full.window
            progress?(column * E)
        }
        if column < L {
            let rest = RecurrentNetwork<Float>(config: model, streams: E, window: L - column)
            total += score(rest, segments: E, segmentLength: L, origin: 0, begin: column, state: state)
        }
        let leftover = targetCount - E * L
        if leftover > 0 {
            // Continue the last segment from its state.
            let last = RecurrentState<Float>(config: model, streams: 1)
            let H = model.hiddenSize
            for l in 0..<model.layerCount {
                (last.h + l * H).update(from: state.h + (l * E + E - 1) * H, count: H)
                if let c = state.c, let lc = last.c { (lc + l * H).update(from: c + (l * E + E - 1) * H, count: H) }
            }
            var begin = 0
            while begin < leftover {
                let width = min(T, leftover - begin)
                let net = RecurrentNetwork<Float>(config: model, streams: 1, window: width)
                total += score(net, segments: 1, segmentLength: 0, origin: E * L, begin: begin, state: last)
                begin += width
            }
        }
        return Result(natsPerCharacter: total / Double(targetCount), characters: targetCount)
    }
}
