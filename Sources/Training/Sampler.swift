import Recurrent

/// Generates text from a trained model one symbol at a time (char-rnn's sample.lua), with
/// temperature, top-k and top-p (nucleus) filtering and an optional stop text.
public struct Sampler {
    public var temperature: Double = 1
    public var argmax = false
    public var seed: UInt64 = 1
    /// Draw only from the k most likely symbols (0 = all).
    public var topK = 0
    /// Draw only from the smallest set of most likely symbols whose probability (after the
    /// temperature) reaches p (1 = all).
    public var topP = 1.0
    /// Generation ends once the generated text ends with this (it is kept).
    public var stop: String?

    public init(temperature: Double = 1, argmax: Bool = false, seed: UInt64 = 1, topK: Int = 0, topP: Double = 1,
                stop: String? = nil) {
        self.temperature = temperature
        self.argmax = argmax
        self.seed = seed
        self.topK = topK
        self.topP = topP
        self.stop = stop
    }

    /// Returns `prime` followed by up to `length` generated symbols (fewer when `stop` is
    /// generated). The prime is run through the model first; without one, generation starts
    /// after a newline (or the first symbol). Throws `VocabularyError` when the prime or the
    /// stop text holds symbols the vocabulary lacks.
    public func sample(model: ModelConfig, vocabulary: Vocabulary, parameters: [Float],
                       prime: String, length: Int) throws -> String {
        precondition(temperature > 0 && length >= 0 && topK >= 0 && topP > 0 && topP <= 1)
        var primeIds = try vocabulary.encode(prime)
        let stopIds = try stop.map { try vocabulary.encode($0) } ?? []
        if primeIds.isEmpty { primeIds = [vocabulary.id(of: "\n") ?? 0] }
        var rng = SeededGenerator(seed: seed)
        let net = RecurrentNetwork<Float>(config: model, streams: 1, window: 1)
        let state = RecurrentState<Float>(config: model, streams: 1)
        var output: [Int32] = []
        output.reserveCapacity(min(length, 1 << 20))   // grows past that as needed
        var weights = [Double](repeating: 0, count: model.vocabularySize)
        var order = Array(0..<model.vocabularySize)
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
                next = Int32(argmax ? Self.argmaxIndex(p) : draw(p, &weights, &order, &rng))
                output.append(next)
                if !stopIds.isEmpty, output.count >= stopIds.count, output.suffix(stopIds.count).elementsEqual(stopIds) { break }
            }
        }
        return (prime.isEmpty ? "" : prime) + vocabulary.decode(output)
    }

    private static func argmaxIndex(_ p: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<p.count where p[i] > p[best] { best = i }
        return best
    }

    /// Draws from p^(1/temperature), renormalised (= softmax(logits / temperature)), after
    /// top-k and top-p keep only the most likely symbols. The weights are (p / max p)^(1/temperature),
    /// so the most likely symbol weighs 1 and a tiny temperature cannot underflow every weight
    /// to 0. `order` is scratch for the ranking (ties: the lower id first).
    private func draw(_ p: UnsafeBufferPointer<Float>, _ weights: inout [Double], _ order: inout [Int],
                      _ rng: inout SeededGenerator) -> Int {
        let top = Double(p.max() ?? 1)
        var sum = 0.0
        for i in 0..<p.count {
            weights[i] = temperature == 1 ? Double(p[i]) : (Double(p[i]) / top).pow(1 / temperature)
            sum += weights[i]
        }
        if topK > 0 || topP < 1 {
            for i in order.indices { order[i] = i }
            order.sort { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
            var kept = topK > 0 ? min(topK, p.count) : p.count
            if topP < 1 {
                var mass = 0.0
                for (rank, i) in order.prefix(kept).enumerated() {
                    mass += weights[i]
                    if mass >= topP * sum { kept = rank + 1; break }
                }
            }
            sum = 0
            for (rank, i) in order.enumerated() {
                if rank < kept { sum += weights[i] } else { weights[i] = 0 }
            }
        }
        var u = rng.nextDouble() * sum
        for i in 0..<p.count {
            u -= weights[i]
            if u < 0 { return i }
        }
        return weights.lastIndex { $0 > 0 } ?? p.count - 1   // rounding left u ≥ 0
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
