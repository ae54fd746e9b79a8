import Recurrent

/// What a config and a corpus fix for a run: the model and its parameter table, the data
/// split and the step layout (streams of a language model, batches of a classifier).
/// Derived here once, by every process of a run (the loop's session, each worker), so that
/// all of them agree.
public struct RunPlan {
    public let config: TrainingConfig
    public let model: ModelConfig
    public let layout: ParameterLayout
    /// Language model: the train and validation splits as symbol ids (views of the corpus's
    /// tokens) and the stream layout over the train split. Empty and nil for a classifier.
    public let train: TokenStore
    public let validation: TokenStore
    public let streamLayout: StreamLayout?
    /// Classifier: its examples and the batch of every step; nil for a language model.
    public let classification: Classification?

    public struct Classification {
        public let train: LabelledExamples
        public let validation: LabelledExamples
        public let batches: ClassifierBatches
        public var labels: [String] { train.labels }
    }

    /// Validates the config and that the corpus gives one step's data. A classifier's
    /// validation examples are the last lines of the corpus (`validationFraction`) unless
    /// `validation` (another file's, read with `LabelledExamples.read`) is given.
    public init(config: TrainingConfig, corpus: Corpus, validation labelled: LabelledExamples? = nil) throws {
        try config.validate()
        self.config = config
        if config.isClassifier {
            let (examples, split) = try LabelledExamples.split(corpus, validationFraction: config.validationFraction)
            guard examples.count >= config.streams else {
                throw TrainingError.invalidValue(.streams, value: "\(config.streams)",
                                                 rule: "at most the \(examples.count) training examples of \(corpus.name)")
            }
            model = config.model(vocabularySize: corpus.vocabulary.count, labelCount: examples.labels.count)
            classification = Classification(train: examples, validation: labelled ?? split,
                                            batches: ClassifierBatches(train: examples, batch: config.streams,
                                                                       maxLength: config.resolvedMaxLength, seed: config.seed))
            (train, validation, streamLayout) = ([], [], nil)
        } else {
            try corpus.requireTrainingLength(streams: config.streams, window: config.window,
                                             validationFraction: config.validationFraction)
            model = config.model(vocabularySize: corpus.vocabulary.count)
            (train, validation) = corpus.split(validationFraction: config.validationFraction)
            streamLayout = StreamLayout(trainCount: train.count, streams: config.streams, window: config.window)
            classification = nil
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

    public var stepsPerEpoch: Int { streamLayout?.stepsPerEpoch ?? classification!.batches.stepsPerEpoch }

    /// Epoch and step within it of global step s (counted from 0).
    public func position(globalStep s: Int) -> (epoch: Int, stepInEpoch: Int) {
        streamLayout?.position(globalStep: s) ?? classification!.batches.position(globalStep: s)
    }

    /// The engine of the task for the streams (examples) `block` of every step, on `threads`.
    public func engine(block: Range<Int>, threads: Int) -> any GradientComputing {
        if let classification {
            return ClassifierEngine(config: model, train: classification.train, batches: classification.batches, block: block,
                                    chunkExamples: config.chunkStreams, maxLength: config.resolvedMaxLength, threads: threads)
        }
        return GradientEngine(config: model, train: train, streamLayout: streamLayout!, streams: block,
                              chunkStreams: config.chunkStreams, threads: threads, dropout: config.dropoutMasks)
    }
}
