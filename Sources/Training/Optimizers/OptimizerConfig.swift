/// The update rules Recur offers, each with `torch.optim` semantics at its defaults
/// (no weight decay, no Nesterov, not centred, no AMSGrad, dampening 0, lr_decay 0).
public enum OptimizerKind: String, CaseIterable, Codable, Sendable {
    case sgd, momentum, adagrad, rmsprop, adam

    /// The one source of every default learning rate (the CLI, configs and tests read it).
    /// Adagrad and RMSprop use `torch.optim`'s defaults. Adam takes 2e-3, char-rnn's choice for
    /// character models (`torch.optim.Adam` defaults to 1e-3). `torch.optim.SGD` has no useful
    /// default, so plain SGD takes 0.1 (char-level RNNs with clipped gradients train at 0.1–1),
    /// and SGD with momentum 0.9 takes 0.01, which gives the same step as 0.1 once the momentum
    /// buffer has built up (a steady gradient is summed 1/(1-0.9) = 10 times).
    public var defaultLearningRate: Float {
        switch self {
        case .sgd: return 0.1
        case .momentum: return 0.01
        case .adagrad: return 1e-2
        case .rmsprop: return 1e-2
        case .adam: return 2e-3
        }
    }

    /// The ε of `torch.optim`: Adagrad 1e-10, RMSprop and Adam 1e-8 (unused by SGD).
    public var defaultEpsilon: Double {
        switch self {
        case .sgd, .momentum: return 0
        case .adagrad: return 1e-10
        case .rmsprop, .adam: return 1e-8
        }
    }

    /// Names of the per-parameter state buffers, as PyTorch's optimizer `state` keys, in the
    /// order `Optimizer.stateBuffers` lists them.
    public var stateBufferNames: [String] {
        switch self {
        case .sgd: return []
        case .momentum: return ["momentum_buffer"]
        case .adagrad: return ["sum"]
        case .rmsprop: return ["square_avg"]
        case .adam: return ["exp_avg", "exp_avg_sq"]
        }
    }
}

/// Hyper-parameters of one optimizer. Fields a kind does not use are carried but ignored.
///
/// The learning rate is Float because it flows through `LearningRateSchedule` into every step.
/// The other hyper-parameters are Double, as Python floats are: PyTorch forms `1 - β2` and the
/// bias corrections in double precision and rounds to float once, and `1 - Double(Float(0.999))`
/// would already be off by 1.3e-5 relative.
public struct OptimizerConfig: Codable, Equatable, Sendable {
    public var kind: OptimizerKind
    /// Base learning rate (the schedule may lower it per step).
    public var learningRate: Float
    /// μ of SGD with momentum.
    public var momentum: Double
    /// Adam's β1 and β2.
    public var beta1: Double
    public var beta2: Double
    /// ε added to the denominator of Adagrad, RMSprop and Adam.
    public var epsilon: Double
    /// RMSprop's smoothing constant α.
    public var alpha: Double

    /// Defaults are `torch.optim`'s, except the learning rate (see `OptimizerKind.defaultLearningRate`).
    public init(kind: OptimizerKind, learningRate: Float? = nil, momentum: Double = 0.9,
                beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double? = nil, alpha: Double = 0.99) {
        self.kind = kind
        self.learningRate = learningRate ?? kind.defaultLearningRate
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon ?? kind.defaultEpsilon
        self.alpha = alpha
        precondition(self.learningRate >= 0 && self.epsilon >= 0, "negative learning rate or epsilon")
        precondition((0..<1).contains(momentum) && (0..<1).contains(beta1) && (0..<1).contains(beta2)
                     && (0...1).contains(alpha), "momentum, betas in [0, 1), alpha in [0, 1]")
    }
}
