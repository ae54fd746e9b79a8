import Foundation
import Training
import Wire

/// The hello a worker sends: what must be equal on both sides for the gradients to mean
/// the same thing (the corpus bytes and its vocabulary; the coordinator sends the run
/// config with the welcome).
enum Fingerprint {
    static func hello(corpus: Corpus, threads: Int) -> Hello {
        Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest,
              host: ProcessInfo.processInfo.hostName, pid: UInt32(getpid()), threads: UInt32(threads))
    }
}
