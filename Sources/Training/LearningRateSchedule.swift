import Foundation

/// Step decay, as `torch.optim.lr_scheduler.StepLR`: the rate is `base · decayFactor^⌊step/decayEvery⌋`,
/// where `step` counts optimizer steps already taken (so steps 0 ..< decayEvery use `base`).
/// `decayEvery` 0 keeps the rate constant. Computed in closed form in Double (StepLR's
/// `_get_closed_form_lr`), so a resumed run gets the same rate as an uninterrupted one.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public var base: Float
    /// Steps between decays; 0 = constant.
    public var decayEvery: Int
    /// Multiplier applied at each decay (StepLR's gamma).
    public var decayFactor: Float

    public init(base: Float, decayEvery: Int = 0, decayFactor: Float = 1) {
        precondition(base >= 0 && decayEvery >= 0 && decayFactor >= 0,
                     "learning rate schedule needs base >= 0, decayEvery >= 0, decayFactor >= 0")
        self.base = base
        self.decayEvery = decayEvery
        self.decayFactor = decayFactor
    }

    public static func constant(_ rate: Float) -> LearningRateSchedule {
        LearningRateSchedule(base: rate)
    }

    public func rate(atStep step: Int) -> Float {
        precondition(step >= 0, "step must be >= 0, got \(step)")
        guard decayEvery > 0 else { return base }
        let decays = Double(step / decayEvery)
        return Float(Double(base) * pow(Double(decayFactor), decays))
    }
}
