import Foundation
import FuzzTargets
import XCTest

/// A short, deterministic fuzzing run of every decoder inside the normal suite: seeded
/// structure-aware mutations (`Mutator`) of valid encodings and of the committed corpus
/// (Tests/Fuzz/corpus/TARGET). Every input must decode or be rejected with the decoder's typed
/// error; a trap ends the test process. scripts/fuzz runs the same targets for longer, and
/// under libFuzzer with AddressSanitizer.
final class FuzzTests: XCTestCase {
    /// Per target: about 6 s for the eight together on a loaded machine, tens of thousands of inputs.
    static let seconds = 0.8
    static let maximumInputs = 20_000

    static let corpusRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")

    static func corpus(_ target: String) -> [[UInt8]] {
        let directory = corpusRoot.appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().compactMap { try? Array(Data(contentsOf: directory.appendingPathComponent($0))) }
    }

    func fuzz(_ name: String, seed: UInt64 = 20261130) throws {
        let target = try XCTUnwrap(FuzzTargets.named(name))
        for (index, input) in target.seeds().enumerated() {
            XCTAssertEqual(target.run(input), .decoded, "built-in seed \(index) of \(name) must decode")
        }
        let corpus = Self.corpus(name)
        XCTAssertFalse(corpus.isEmpty, "no committed corpus for \(name) under \(Self.corpusRoot.path)")
        let result = Campaign.run(target, seed: seed, extraSeeds: corpus, seconds: Self.seconds,
                                  maximumInputs: Self.maximumInputs)
        for finding in result.findings {
            let hex = finding.input.prefix(256).map { String(format: "%02x", $0) }.joined()
            XCTFail("\(name): \(finding.message); input (hex, first 256 bytes): \(hex)")
        }
        XCTAssertGreaterThan(result.inputs, 1000, "\(name): too few inputs ran")
        XCTAssertGreaterThan(result.rejected, 0, "\(name): the mutations never reached an error path")
        print("fuzz \(name): \(result.inputs) inputs, \(Int(result.inputsPerSecond))/s, \(result.decoded) decoded, \(result.rejected) rejected")
    }

    func testWire() throws { try fuzz("wire") }
    func testSafetensors() throws { try fuzz("safetensors") }
    func testCheckpointModel() throws { try fuzz("checkpoint-model") }
    func testCheckpointMetadata() throws { try fuzz("checkpoint-metadata") }
    func testStateJSON() throws { try fuzz("state-json") }
    func testCorpus() throws { try fuzz("corpus") }
    func testLabelFile() throws { try fuzz("label-file") }
    func testInputLines() throws { try fuzz("input-lines") }
    func testShardMessages() throws { try fuzz("shard-messages") }

    /// The same seed gives the same inputs.
    func testMutatorIsDeterministic() {
        var a = Mutator(seed: 5, dictionary: [[1, 2]]), b = Mutator(seed: 5, dictionary: [[1, 2]])
        let base: [UInt8] = Array("{\"step\":42,\"x\":[1,2]}".utf8)
        for _ in 0..<200 {
            XCTAssertEqual(a.mutate(base, others: [base]), b.mutate(base, others: [base]))
        }
    }
}
