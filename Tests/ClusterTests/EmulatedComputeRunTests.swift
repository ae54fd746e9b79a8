import Foundation
import XCTest

/// `recur work --emulate-compute MS` as a user meets it: bad values end in one line and exit
/// 64; two emulating workers finish a run with a real `recur serve`, the same bytes twice,
/// and really spend the wait.
final class EmulatedComputeRunTests: ClusterTestCase {
    private let model = ["--hidden", "32", "--layers", "2", "--batch", "8", "--seq", "8", "--chunk", "4"]
    private let milliseconds = 40.0

    func testBadValuesGiveOneLineAndExit64() throws {
        for value in ["0", "=-5", "nan", "inf", "4000000", "fast"] {
            // "=-5" is given as --emulate-compute=-5 (a bare -5 reads as an option).
            let flag = value.hasPrefix("=") ? ["--emulate-compute" + value] : ["--emulate-compute", value]
            let work = try launch(["work", "--connect", "tcp://127.0.0.1:9"] + flag)
            XCTAssertEqual(work.waitForExit(timeout: 10), 64, work.transcript)
            XCTAssertEqual(work.stderr.lines.filter { !$0.isEmpty }.count, 1, work.transcript)
            XCTAssertTrue(work.stderr.text.contains("--emulate-compute"), work.transcript)
            XCTAssertTrue(work.stderr.text.contains(value.trimmingCharacters(in: ["="])), work.transcript)
        }
    }

    /// The step records of one emulated run (coordinator plus two workers, 6 steps) and its
    /// final weights.
    private func emulatedRun() throws -> (weights: Data, records: [[String: Any]]) {
        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let log = directory.appendingPathComponent("log.jsonl")
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "2", "--steps", "6", "--heartbeat-timeout", "10",
                                "--checkpoint-dir", directory.appendingPathComponent("ckpt").path, "--log-jsonl", log.path] + model)
        let workers = try (0..<2).map { _ in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "10",
                        "--emulate-compute", "\(milliseconds)"])
        }
        XCTAssertEqual(serve.waitForExit(timeout: 60), 0, serve.transcript)
        for worker in workers {
            XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["compute is emulated", "waits 40.0 ms"]), worker.transcript)
        }
        let records = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["step"] != nil && $0["kind"] as? String != "evaluation" }   // step records only
        let weights = try Data(contentsOf: directory.appendingPathComponent("ckpt/model.safetensors"))
        return (weights, records)
    }

    func testTwoEmulatingWorkersFinishARunWithTheSameBytesTwiceAndSpendTheWait() throws {
        let first = try emulatedRun(), second = try emulatedRun()
        XCTAssertEqual(first.weights, second.weights, "two emulated runs ended with different weights")
        for run in [first, second] {
            XCTAssertEqual(run.records.count, 6)
            for record in run.records {
                // The emulation's loss, ln V per token: e^loss is the vocabulary size.
                let loss = try XCTUnwrap(record["loss"] as? Double)
                XCTAssertEqual(exp(loss), exp(loss).rounded(), accuracy: 1e-6, "loss \(loss) is not ln V")
                let norm = try XCTUnwrap(record["gradientNorm"] as? Double)
                XCTAssertTrue(norm > 0 && norm.isFinite, "gradient norm \(norm)")
                // Each worker's compute took at least the wait (a lower bound only).
                let workers = try XCTUnwrap(record["workers"] as? [[String: Any]])
                XCTAssertEqual(workers.count, 2)
                for worker in workers {
                    let seconds = try XCTUnwrap(worker["computeSeconds"] as? Double)
                    XCTAssertGreaterThanOrEqual(seconds, milliseconds / 1000, "step \(record["step"] ?? "?")")
                }
            }
        }
    }
}
