/// The data of each task of a `RunPlan`, derived from a config and a corpus.
extension RunPlan {
    /// A language model's data: the train and validation splits as symbol ids (views of the
    /// corpus's tokens) and the stream layout (N streams of T-column windows) over the train split.
    public struct LanguageModelData {
        public let train: TokenStore
        public let validation: TokenStore
        public let streamLayout: StreamLayout

        /// Checks that the corpus fills one step of N streams of T columns after the split.
        init(config: TrainingConfig, corpus: Corpus) throws {
            try corpus.requireTrainingLength(streams: config.streams, window: config.window,
                                             validationFraction: config.validationFraction)
            (train, validation) = corpus.split(validationFraction: config.validationFraction)
            streamLayout = StreamLayout(trainCount: train.count, streams: config.streams, window: config.window)
        }
    }

    /// A classifier's data: its training and validation examples and the batch of every step.
    public struct Classification {
        public let train: LabelledExamples
        public let validation: LabelledExamples
        public let batches: ClassifierBatches
        public var labels: [String] { train.labels }

        /// The corpus's lines as examples, the last `validationFraction` of them held out
        /// unless `validation` is given; at least N training examples.
        init(config: TrainingConfig, corpus: Corpus, validation labelled: LabelledExamples?) throws {
            let (examples, split) = try LabelledExamples.split(corpus, validationFraction: config.validationFraction)
            guard examples.count >= config.streams else {
                throw TrainingError.invalidValue(.streams, value: "\(config.streams)",
                                                 rule: "at most the \(examples.count) training examples of \(corpus.name)")
            }
            train = examples
            validation = labelled ?? split
            batches = ClassifierBatches(train: examples, batch: config.streams, maxLength: config.resolvedMaxLength, seed: config.seed)
        }
    }
}
