import Foundation
import XCTest
import Training

final class BuiltinCorpusTests: XCTestCase {
    private static let text = BuiltinCorpus.generate()

    /// The text is pinned: any change to the grammar, word lists or generator shows up here
    /// (and changes every fingerprint made from the built-in corpus).
    func testDeterministicAndPinned() {
        XCTAssertEqual(Self.text, BuiltinCorpus.generate())
        XCTAssertEqual(SHA256.hex(Array(Self.text.utf8)),
                       "68ac04d043d546e3d5039597b2159df3a220cc5b4507fb2bb0405c4a2f9abfa7")
        XCTAssert(Self.text.hasPrefix("THE TRAGEDY OF THE BROKEN LAMB\n\nACT I\n\nSCENE I. The king's chamber.\n\n"))
        XCTAssert(Self.text.hasSuffix("Exeunt.\n\n"))
        XCTAssertNotEqual(BuiltinCorpus.text(seed: 1, targetSize: 2_000), BuiltinCorpus.text(seed: 2, targetSize: 2_000))
    }

    func testSizeAndVocabulary() {
        let corpus = Corpus.builtin()
        XCTAssertEqual(corpus.name, "builtin")
        XCTAssertEqual(corpus.count, 400_189)
        XCTAssertEqual(corpus.count, Self.text.utf8.count, "ASCII only: one byte per scalar")
        XCTAssert((300_000...500_000).contains(corpus.count))
        XCTAssertEqual(corpus.vocabulary.count, 64)
        XCTAssert((40...90).contains(corpus.vocabulary.count))
        XCTAssertEqual(corpus.digest, SHA256.hex(Array(Self.text.utf8)))
    }

    /// Learnable structure: the next character given the previous two is far more predictable
    /// than a character alone. Plug-in estimates on the text itself, in nats: about 3.43 and
    /// 1.03 (Tiny Shakespeare: 3.31 and 1.91).
    func testContextLowersEntropy() {
        let corpus = Corpus.builtin()
        let V = corpus.vocabulary.count, tokens = corpus.tokens.map(Int.init)
        var unigram = [Double](repeating: 0, count: V)
        var pairs = [Double](repeating: 0, count: V * V)
        var triples = [Double](repeating: 0, count: V * V * V)
        for i in 2..<tokens.count {
            let a = tokens[i - 2], b = tokens[i - 1], c = tokens[i]
            unigram[c] += 1
            pairs[a * V + b] += 1
            triples[(a * V + b) * V + c] += 1
        }
        let n = Double(tokens.count - 2)
        let unigramEntropy = -unigram.reduce(0) { $1 > 0 ? $0 + $1 / n * log($1 / n) : $0 }
        var conditionalEntropy = 0.0
        for (index, count) in triples.enumerated() where count > 0 {
            conditionalEntropy -= count / n * log(count / pairs[index / V])
        }
        XCTAssertEqual(unigramEntropy, 3.43, accuracy: 0.01)
        XCTAssertEqual(conditionalEntropy, 1.03, accuracy: 0.01)
        XCTAssertGreaterThan(unigramEntropy - conditionalEntropy, 1.5)
    }

    /// Brackets and quotes close on the line that opens them, speakers are capitalised cast
    /// names, and a "Where is X?" is answered by "X is ..." opening the next speech.
    func testGrammarInvariants() {
        let lines = Self.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var whereQuestions = 0
        for (index, line) in lines.enumerated() {
            XCTAssertEqual(line.filter { $0 == "(" }.count, line.filter { $0 == ")" }.count, line)
            XCTAssertEqual(line.filter { $0 == "[" }.count, line.filter { $0 == "]" }.count, line)
            XCTAssertEqual(line.filter { $0 == "\"" }.count % 2, 0, line)
            if line.hasSuffix(":") {
                XCTAssert(line.dropLast().allSatisfy(\.isUppercase), line)
                XCTAssertEqual(lines[index - 1], "", "a speech starts after a blank line")
            }
            if line.hasPrefix("Where is "), line.hasSuffix("?") {
                whereQuestions += 1
                let subject = line.dropFirst("Where is ".count).dropLast()
                let header = lines[(index + 1)...].firstIndex { $0.hasSuffix(":") }!
                XCTAssert(lines[header + 1].lowercased().hasPrefix(subject + " is "), "\(line) → \(lines[header + 1])")
            }
        }
        XCTAssertGreaterThan(whereQuestions, 500)
    }
}
