/// Where the run's weights and optimizer state are updated: in this process
/// (`LocalParameterStore`, the session's `ParameterUpdate`), or on S parameter shards (the
/// Cluster module's `ShardedStore`), which hold them and hand them back when the loop reads
/// them. The loop applies every step through its store and asks for nothing else; sharded and
/// unsharded runs differ only in the store plugged in.
public protocol ParameterStore: AnyObject {
    /// Divides the step's gradient by its tokens, clips it and takes optimizer step `step`
    /// (0-based). A gradient norm that is not finite changes nothing (the loop stops the run).
    func apply(_ g: StepGradient, step: Int) throws -> ParameterUpdate.Report

    /// Brings the session's `ParameterUpdate` (weights and optimizer state) up to date before
    /// the loop reads it: evaluation, checkpoint, the final sample.
    func synchronize() throws
}

/// The parameters of this process: the session's update, applied here.
public final class LocalParameterStore: ParameterStore {
    public let update: ParameterUpdate

    public init(_ update: ParameterUpdate) { self.update = update }

    public func apply(_ g: StepGradient, step: Int) throws -> ParameterUpdate.Report {
        guard let sum = g.gradientSum else {
            preconditionFailure("a gradient reduced on parameter shards needs the store of those shards")
        }
        return update.apply(gradientSum: sum, tokenCount: g.tokenCount, step: step)
    }

    public func synchronize() throws {}
}
