import Recurrent

/// What a session takes from its starting checkpoint besides the config: the checks that need
/// the run's corpus and plan, and the weights of a new run (`--init-from`).
extension StartingCheckpoint {
    /// A resumed run must read the corpus it was trained on (same digest).
    func requireSameCorpus(_ corpus: Corpus) throws {
        guard let saved = resumedRun, saved.corpusDigest != corpus.digest else { return }
        throw TrainingError.checkpoint("checkpoint \(path) was trained on another corpus (digest \(saved.corpusDigest.prefix(12))…, \(corpus.name) \(corpus.digest.prefix(12))…): give --data the run's corpus")
    }

    /// The weights a new run of `plan` on `corpus` starts from, given its fresh ones
    /// `initialized`, and the line that says what was taken when it is not the whole model.
    /// A classifier from a language model takes its recurrent layers (`LanguageModelTransfer`);
    /// otherwise the checkpoint must be of the same model (the pooling aside: it changes what
    /// the head reads, not the weights), labels and vocabulary, and its weights are taken whole.
    func weights(for plan: RunPlan, corpus: Corpus, initialized: [Float]) throws -> (values: [Float], note: String?) {
        if plan.classification != nil, checkpoint.model.labelCount == nil {
            var values = initialized
            let report = try LanguageModelTransfer.copy(from: checkpoint, into: &values, layout: plan.layout,
                                                        vocabulary: corpus.vocabulary, path: path)
            let unseen = report.unseenCharacters > 0 ? "; \(report.unseenCharacters) character(s) it never saw keep fresh input weights" : ""
            return (values, "started the recurrent layers from the language model in \(path): \(report.tensors) tensors, \(report.scalars) values; the head starts fresh" + unseen)
        }
        var saved = checkpoint.model
        saved.pooling = plan.model.pooling
        guard saved == plan.model else {
            throw TrainingError.checkpoint("\(path) is a checkpoint of another model: \(Checkpoint.modelJSON(checkpoint.model)), this run is \(Checkpoint.modelJSON(plan.model))")
        }
        guard checkpoint.labels == plan.labels else {
            throw TrainingError.checkpoint("\(path) classifies into other labels than \(corpus.name) has")
        }
        guard checkpoint.vocabulary == corpus.vocabulary else {
            throw TrainingError.checkpoint("\(path) has another vocabulary than \(corpus.name)")
        }
        return (checkpoint.parameters, nil)
    }
}
