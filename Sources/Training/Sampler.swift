import Recurrent

/// Generates text from a trained model one symbol at a time (char-rnn's sample.lua).
public struct Sampler {
    public var temperature: Double = 1
    public var argmax = false
    public var seed: UInt64 = 1

    public init(temperature: Double = 1, argmax: Bool = false, seed: UInt64 = 1) {
        self.temperature = temperature
        self.argmax = argmax
        self.seed = seed
    }

    /// Returns `prime` followed by `length` generated symbols. The prime is run through the
    /// model first; without one, generation starts after a newline (or the first symbol).
    public func sample(model: ModelConfig, vocabulary: Vocabulary, parameters: [Float],
                       prime: String, length: Int) throws -> String {
        precondition(temperature > 0 && length >= 0)
        var primeIds = try vocabulary.encode(prime)
        if primeIds.isEmpty { primeIds = [vocabulary.id(of: "\n") ?? 0] }
        var rng = SeededGenerator(seed: seed)
        let net = RecurrentNetwork<Float>(config: model, streams: 1, window: 1)
        let state = RecurrentState<Float>(config: model, streams: 1)
        var output: [Int32] = []
        output.reserveCapacity(min(length, 1 << 20))   // grows past that as needed
        var distribution = [Double](repeating: 0, count: model.vocabularySize)
        parameters.withUnsafeBufferPointer { w in
            var next = primeIds[0]
            var position = 0
            while output.count < length {
                net.inputs[0] = next
                net.targets[0] = 0
                net.forward(parameters: w.baseAddress!, initialState: state.view, weightsUnchanged: position > 0)
                net.copyFinalState(to: state.view)
                position += 1
                if position < primeIds.count {
                    next = primeIds[position]   // still feeding the prime
                    continue
                }
                let p = net.probabilities(stream: 0, step: 0)
                next = Int32(argmax ? Self.argmaxIndex(p) : draw(p, &distribution, &rng))
                output.append(next)
            }
        }
        return (prime.isEmpty ? "" : prime) + vocabulary.decode(output)
    }

    private static func argmaxIndex(_ p: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<p.count where p[i] > p[best] { best = i }
        return best
    }

    /// Draws from p^(1/temperature), renormalised (= softmax(logits / temperature)). The
    /// weights are (p / max p)^(1/temperature), so the most likely symbol weighs 1 and a
    /// tiny temperature cannot underflow every weight to 0.
    private func draw(_ p: UnsafeBufferPointer<Float>, _ weights: inout [Double], _ rng: inout SeededGenerator) -> Int {
        let top = Double(p.max() ?? 1)
        var sum = 0.0
        for i in 0..<p.count {
            weights[i] = temperature == 1 ? Double(p[i]) : (Double(p[i]) / top).pow(1 / temperature)
            sum += weights[i]
        }
        var u = rng.nextDouble() * sum
        for i in 0..<p.count {
            u -= weights[i]
            if u < 0 { return i }
        }
        return p.count - 1
    }
}

private extension Double {
    func pow(_ e: Double) -> Double { self <= 0 ? 0 : Foundation_exp(e * Foundation_log(self)) }
}

#if canImport(Glibc)
import Glibc
private func Foundation_exp(_ x: Double) -> Double { Glibc.exp(x) }
private func Foundation_log(_ x: Double) -> Double { Glibc.log(x) }
#endif
