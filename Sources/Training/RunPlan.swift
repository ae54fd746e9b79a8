import Recurrent

/// What a config and a corpus fix for a run: the model and its parameter table, the data
/// split and the stream layout. Derived here once, by every process of a run (the loop's
/// session, each worker), so that all of them agree.
public struct RunPlan {
    public let config: TrainingConfig
    public let model: ModelConfig
    public let layout: ParameterLayout
    /// The train and validation splits as symbol ids (views of the corpus's tokens).
    public let train: TokenStore
    public let validation: TokenStore
    public let streamLayout: StreamLayout

    /// Validates the config and that the corpus is long enough for one window of N streams.
    public init(config: TrainingConfig, corpus: Corpus) throws {
        try config.validate()
        try corpus.requireTrainingLength(streams: config.streams, window: config.window,
                                         validationFraction: config.validationFraction)
        self.config = config
        model = config.model(vocabularySize: corpus.vocabulary.count)
        layout = ParameterLayout(model)
        (train, validation) = corpus.split(validationFraction: config.validationFraction)
        streamLayout = StreamLayout(trainCount: train.count, streams: config.streams, window: config.window)
    }

    /// Gradient chunks of the batch: N / chunkStreams, the units workers and threads share.
    public var chunkCount: Int { config.streams / config.chunkStreams }
    /// Predictions per step: N·T.
    public var tokensPerStep: Int { config.streams * config.window }
    /// The streams of chunks `chunks`.
    public func streams(ofChunks chunks: Range<Int>) -> Range<Int> {
        (chunks.lowerBound * config.chunkStreams)..<(chunks.upperBound * config.chunkStreams)
    }
}
