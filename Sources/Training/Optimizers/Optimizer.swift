import Foundation

/// Why saved optimizer state does not fit this optimizer (a checkpoint of another model or kind).
public enum OptimizerStateError: Error, Equatable, CustomStringConvertible {
    case wrongBufferNames(kind: OptimizerKind, expected: [String], found: [String])
    case wrongBufferSize(name: String, expected: Int, found: Int)
    case negativeStepCount(Int)

    public var description: String {
        switch self {
        case let .wrongBufferNames(kind, expected, found):
            return "optimizer state: \(kind.rawValue) keeps buffers \(expected), the checkpoint has \(found)"
        case let .wrongBufferSize(name, expected, found):
            return "optimizer state: buffer '\(name)' has \(found) values, the model has \(expected) parameters"
        case let .negativeStepCount(count):
            return "optimizer state: step count \(count) is negative"
        }
    }
}

/// An optimizer over one flat parameter slab of P values, with `torch.optim` semantics.
///
/// State is one flat buffer of P Floats per PyTorch state key (`momentum_buffer`, `sum`,
/// `square_avg`, `exp_avg`, `exp_avg_sq`), laid out like the parameters, plus the step count t.
/// Each step is one fused pass over raw pointers and allocates nothing.
///
/// Arithmetic follows PyTorch's single-tensor CPU path (`foreach=False`) operation by operation:
/// scalar coefficients are formed in Double (Python floats) and rounded to Float once, element
/// work is Float. PyTorch's vectorised kernels fuse some multiply-adds (FMA); we do not, so the
/// results agree to a few ulp rather than bit for bit.
public final class Optimizer {
    public let config: OptimizerConfig
    /// P, the length of the parameter slab.
    public let parameterCount: Int
    /// Number of steps taken (t of Adam's bias correction after the next step is stepCount + 1).
    public private(set) var stepCount: Int = 0

    /// (P) momentum_buffer / sum / square_avg / exp_avg, zero at start; empty for SGD.
    private let first: UnsafeMutableBufferPointer<Float>
    /// (P) exp_avg_sq for Adam; empty otherwise.
    private let second: UnsafeMutableBufferPointer<Float>

    public init(config: OptimizerConfig, parameterCount: Int) {
        precondition(parameterCount >= 0)
        self.config = config
        self.parameterCount = parameterCount
        let buffers = config.kind.stateBufferNames.count
        first = Optimizer.zeros(buffers >= 1 ? parameterCount : 0)
        second = Optimizer.zeros(buffers >= 2 ? parameterCount : 0)
    }

    deinit {
        first.deallocate()
        second.deallocate()
    }

    private static func zeros(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        buffer.initialize(repeating: 0)
        return buffer
    }

    /// Applies one update `parameters -= f(gradient, state)` in place. Both buffers hold P values.
    public func step(parameters: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
                     learningRate: Float) {
        precondition(parameters.count == parameterCount && gradient.count == parameterCount,
                     "optimizer over \(parameterCount) parameters got \(parameters.count) and \(gradient.count)")
        stepCount += 1
        let n = parameterCount
        guard n > 0 else { return }
        let p = parameters.baseAddress!, g = gradient.baseAddress!
        let lr = Double(learningRate)

        switch config.kind {
        case .sgd:
            // param.add_(grad, alpha=-lr)
            let a = Float(-lr)
            for i in 0..<n { p[i] = p[i] + a * g[i] }

        case .momentum:
            // buf.mul_(momentum).add_(grad); param.add_(buf, alpha=-lr). The first step's
            // clone(grad) equals 0·μ + g.
            let b = first.baseAddress!
            let mu = Float(config.momentum), a = Float(-lr)
            for i in 0..<n {
                let v = b[i] * mu + g[i]
                b[i] = v
                p[i] = p[i] + a * v
            }

        case .adagrad:
            // state_sum.addcmul_(grad, grad, value=1); std = state_sum.sqrt().add_(eps);
            // param.addcdiv_(grad, std, value=-clr), clr = lr (lr_decay 0).
            let s = first.baseAddress!
            let eps = Float(config.epsilon), a = Float(-lr)
            for i in 0..<n {
                let gi = g[i]
                let sum = s[i] + gi * gi
                s[i] = sum
                p[i] = p[i] + a * gi / (sum.squareRoot() + eps)
            }

        case .rmsprop:
            // square_avg.mul_(alpha).addcmul_(grad, grad, value=1-alpha);
            // avg = square_avg.sqrt().add_(eps); param.addcdiv_(grad, avg, value=-lr)
            let v = first.baseAddress!
            let alpha = Float(config.alpha), c = Float(1 - config.alpha)
            let eps = Float(config.epsilon), a = Float(-lr)
            for i in 0..<n {
                let gi = g[i]
                let avg = v[i] * alpha + c * gi * gi
                v[i] = avg
                p[i] = p[i] + a * gi / (avg.squareRoot() + eps)
            }

        case .adam:
            // exp_avg.lerp_(grad, 1-beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
            // step_size = lr / (1 - beta1^t); bias_correction2_sqrt = sqrt(1 - beta2^t)
            // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            // param.addcdiv_(exp_avg, denom, value=-step_size)
            let m = first.baseAddress!, v = second.baseAddress!
            let t = Double(stepCount)
            let biasCorrection1 = 1 - pow(config.beta1, t)
            let biasCorrection2 = 1 - pow(config.beta2, t)
            let w = Float(1 - config.beta1)
            let beta2 = Float(config.beta2), c = Float(1 - config.beta2)
            let a = Float(-(lr / biasCorrection1))
            let root = Float(biasCorrection2.squareRoot())
            let eps = Float(config.epsilon)
            precondition(w < 0.5, "lerp below takes PyTorch's small-weight branch; beta1 must exceed 0.5")
            for i in 0..<n {
                let gi = g[i]
                let mi = m[i] + w * (gi - m[i])
                let vi = v[i] * beta2 + c * gi * gi
                m[i] = mi
                v[i] = vi
                p[i] = p[i] + a * mi / (vi.squareRoot() / root + eps)
            }
        }
    }

    /// Copies of the state buffers, named as PyTorch's state keys, for checkpoints.
    public var stateBuffers: [(name: String, values: [Float])] {
        let names = config.kind.stateBufferNames
        return zip(names, [first, second]).map { ($0, Array($1)) }
    }

    /// Loads state saved from `stateBuffers` and `stepCount`; names and sizes must match exactly.
    public func restore(stepCount: Int, buffers: [(name: String, values: [Float])]) throws {
        guard stepCount >= 0 else { throw OptimizerStateError.negativeStepCount(stepCount) }
        let expected = config.kind.stateBufferNames
        guard buffers.map(\.name) == expected else {
            throw OptimizerStateError.wrongBufferNames(kind: config.kind, expected: expected, found: buffers.map(\.name))
        }
        for buffer in buffers where buffer.values.count != parameterCount {
            throw OptimizerStateError.wrongBufferSize(name: buffer.name, expected: parameterCount,
                                                      found: buffer.values.count)
        }
        for (target, buffer) in zip([first, second], buffers) {
            _ = target.update(from: buffer.values)
        }
        self.stepCount = stepCount
    }
}
