import ArgumentParser
import Training

/// The checks of a whole command line that need the run's config and corpus, made before any
/// process, file or socket of the run exists: memory (before the plan, whose data checks
/// assume a size that fits), then against the plan the count of local processes, workers
/// against gradient chunks, shards against the model. Each refusal is a `ValidationError` or
/// `MemoryBudgetError`: exit 64.
enum Preflight {
    /// Processes one command starts on this machine at most (workers and shards): a larger
    /// count is a typo, and starting it would be a fork storm.
    static let maximumLocalProcesses = 256

    /// `local`: the workers and shards are processes this command starts (train, bench);
    /// otherwise they run elsewhere and join (serve).
    static func requireMemory(_ setup: RunSetup, workers: Int, local: Bool) throws {
        try setup.config.requireMemory(vocabularySize: setup.corpus.vocabulary.count, workersElsewhere: local ? 1 : workers)
    }

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
    }
}
