import Recurrent

/// PyTorch's initialisation: every recurrent weight and bias U(−1/√H, 1/√H) (nn.RNN/LSTM/
/// GRU), and the head's weight and bias U(−1/√H, 1/√H) (nn.Linear with fan_in H). Drawn in
/// layout order from the seeded generator.
public enum ParameterInitializer {
    public static func initialize(_ layout: ParameterLayout, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        let bound = 1 / Float(layout.config.hiddenSize).squareRoot()
        return (0..<layout.count).map { _ in rng.nextUniform(in: -bound...bound) }
    }
}
