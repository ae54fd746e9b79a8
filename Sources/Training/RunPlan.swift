import Recurrent

/// What a config and a corpus fix for a run: the model and its parameter table, and the task
/// with its data split and step layout (streams of a language model, batches of a
/// classifier). Derived here once, by every process of a run (the loop's session, each
/// worker), so that all of them agree.
public struct RunPlan {
    public let config: TrainingConfig
    public let model: ModelConfig
    public let layout: ParameterLayout
    /// What the run learns, with the data of that task.
    public let task: Task

    /// The task of a run and its data.
    public enum Task {
        case languageModel(LanguageModelData)
        case classifier(Classification)
    }

    /// Validates the config and that the corpus gives one step's data. A classifier's
    /// validation examples are the last lines of the corpus (`validationFraction`) unless
    /// `validation` (another file's, read with `LabelledExamples.read`) is given.
    public init(config: TrainingConfig, corpus: Corpus, validation labelled: LabelledExamples? = nil) throws {
        try config.validate()
        self.config = config
        if config.isClassifier {
            let classification = try Classification(config: config, corpus: corpus, validation: labelled)
            model = config.model(vocabularySize: corpus.vocabulary.count, labelCount: classification.labels.count)
            task = .classifier(classification)
        } else {
            model = config.model(vocabularySize: corpus.vocabulary.count)
            task = .languageModel(try LanguageModelData(config: config, corpus: corpus))
        }
        layout = ParameterLayout(model)
    }

    /// Gradient chunks of the batch: N / chunkStreams, the units workers and threads share.
    public var chunkCount: Int { config.streams / config.chunkStreams }
    /// Predictions per step: N·T for a language model, N examples for a classifier.
    public var tokensPerStep: Int { config.predictionsPerStep }
    /// The streams (examples) of chunks `chunks`.
    public func streams(ofChunks chunks: Range<Int>) -> Range<Int> {
        (chunks.lowerBound * config.chunkStreams)..<(chunks.upperBound * config.chunkStreams)
    }

    public var stepsPerEpoch: Int {
        switch task {
        case .languageModel(let data): return data.streamLayout.stepsPerEpoch
        case .classifier(let data): return data.batches.stepsPerEpoch
        }
    }

    /// Epoch and step within it of global step s (counted from 0).
    public func position(globalStep s: Int) -> (epoch: Int, stepInEpoch: Int) {
        switch task {
        case .languageModel(let data): return data.streamLayout.position(globalStep: s)
        case .classifier(let data): return data.batches.position(globalStep: s)
        }
    }

    /// The engine of the task for the streams (examples) `block` of every step, on `threads`.
    public func engine(block: Range<Int>, threads: Int) -> any GradientComputing {
        switch task {
        case .languageModel(let data):
            return GradientEngine(config: model, data: data, streams: block, chunkStreams: config.chunkStreams,
                                  threads: threads, dropout: config.dropoutMasks)
        case .classifier(let data):
            return ClassifierEngine(config: model, data: data, block: block, chunkExamples: config.chunkStreams,
                                    maxLength: config.resolvedMaxLength, threads: threads)
        }
    }

    /// The language model's data; nil for a classifier.
    public var languageModel: LanguageModelData? {
        if case .languageModel(let data) = task { return data }
        return nil
    }

    /// A classifier's class names in class order; none for a language model.
    public var labels: [String] { classification?.labels ?? [] }

    /// The classifier's data; nil for a language model.
    public var classification: Classification? {
        if case .classifier(let data) = task { return data }
        return nil
    }
}
