import ArgumentParser
import Training

/// The checks of a whole command line that need the run's plan (its corpus read, its model
/// known), made before any process, file or socket of the run exists: the count of local
/// processes, workers against gradient chunks, shards against the model, memory. Each
/// refusal is a `ValidationError` or `MemoryBudgetError`: exit 64.
enum Preflight {
    /// Processes one command starts on this machine at most (workers and shards): a larger
    /// count is a typo, and starting it would be a fork storm.
    static let maximumLocalProcesses = 256

    /// `local`: the workers and shards are processes this command starts (train, bench);
    /// otherwise they run elsewhere and join (serve).
    static func check(_ plan: RunPlan, workers: Int, shards: Int, local: Bool) throws {
        if local {
            let processes = (workers > 1 || shards > 1 ? workers : 0) + (shards > 1 ? shards : 0)
            guard processes <= maximumLocalProcesses else {
                throw ValidationError("--workers \(workers) and --shards \(shards) would start \(processes) local processes; at most \(maximumLocalProcesses)")
            }
        }
        guard workers <= plan.chunkCount else {
            throw ValidationError("--workers \(workers) needs at least as many gradient chunks, and --batch \(plan.config.streams) / --chunk \(plan.config.chunkStreams) gives \(plan.chunkCount); lower --chunk or --workers")
        }
        let maximumShards = SlabPartition.maximumShards(plan.layout)
        guard shards <= maximumShards else {
            throw ValidationError("--shards \(shards): this model's parameters make at most \(maximumShards) shards")
        }
        try plan.config.requireMemory(vocabularySize: plan.model.vocabularySize, workersElsewhere: local ? 1 : workers)
    }
}
