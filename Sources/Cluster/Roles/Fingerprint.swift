import Foundation
import Training
import Wire

/// The hello a worker sends: what must be equal on both sides for the gradients to mean
/// the same thing. An empty model config means "whatever the coordinator trains".
enum Fingerprint {
    static func hello(corpus: Corpus, modelConfig: String, threads: Int) -> Hello {
        Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest, modelConfig: modelConfig,
              host: ProcessInfo.processInfo.hostName, pid: UInt32(getpid()), threads: UInt32(threads))
    }
}
