import Foundation
import Training
import Wire

/// The hello a worker sends: what must be equal on both sides for the gradients to mean
/// the same thing (the corpus bytes and its vocabulary; the coordinator sends the run
/// config with the welcome).
enum Fingerprint {
    static func hello(corpus: Corpus, threads: Int, joinToken: String = "") -> Hello {
        Hello(corpusDigest: corpus.digest, vocabularyDigest: corpus.vocabulary.digest,
              host: ProcessInfo.processInfo.hostName, pid: UInt32(getpid()), threads: UInt32(threads),
              joinToken: joinToken)
    }
}

extension Fingerprint {
    /// Why `hello` may not join a job with fingerprint `expected` and `joinToken`; nil if it may.
    static func refusal(of hello: Hello, expected: Hello, joinToken: String?) -> String? {
        if let token = joinToken, !sameBytes(hello.joinToken, token) {
            return (hello.joinToken.isEmpty ? "missing" : "wrong") + " join token: the worker needs the token `recur serve` printed"
        }
        return hello.fingerprintMismatch(expected: expected).map { "\($0)" }
    }
}

/// Compares two secrets in time that depends only on their lengths.
func sameBytes(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for i in x.indices { difference |= x[i] ^ y[i] }
    return difference == 0
}

/// The secrets of admission: a job's join token, a rank's ticket. 128 random bits from the
/// system's generator as 32 hex digits.
public enum JoinSecret {
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }
}
