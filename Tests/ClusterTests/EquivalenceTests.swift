import Foundation
import XCTest
import Cluster
import Training

/// The whole system in one process: a coordinator and W workers over loopback tcp give the
/// weights and carried state of the in-process trainer, bit for bit, for any W × K that
/// splits the chunks along the reduction tree, and a resumed distributed run continues
/// exactly like an uninterrupted one.
final class EquivalenceTests: ClusterTestCase {
    func testTheTinyRunCrossesEpochBoundaries() {
        let config = ClusterFixtures.tinyConfig()
        let train = Corpus.trainCount(total: ClusterFixtures.corpus.count, validationFraction: config.validationFraction)
        let steps = StreamLayout(trainCount: train, streams: config.streams, window: config.window).stepsPerEpoch
        // The equivalence runs below must exercise the state reset at epoch starts and a
        // mid-epoch resume at step 10.
        XCTAssertGreaterThan(steps, 1)
        XCTAssertLessThan(steps, 10)
        XCTAssertNotEqual(10 % steps, 0)
    }

    func testWorkerAndThreadCountsGiveTheInProcessWeightsBitForBit() throws {
        let config = ClusterFixtures.tinyConfig(steps: 20)
        let reference = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        XCTAssertEqual(reference.step, 20)
        let initial = try TrainingSession(config: config, corpus: ClusterFixtures.corpus, options: RunOptions()).update.values
        XCTAssertNotEqual(reference.values, initial, "the reference must have trained")

        for (label, threads) in [("W=2 × K=1", [1, 1]), ("W=1 × K=2", [2]), ("W=4 × K=1", [1, 1, 1, 1])] {
            let run = try distributedRun(config: config, threads: threads, directory: temporaryDirectory())
            XCTAssertEqual(run.step, 20, label)
            XCTAssertTrue(run.values == reference.values, "\(label): weights differ from the in-process trainer's")
            XCTAssertTrue(run.hiddenH == reference.hiddenH, "\(label): carried h differs")
            XCTAssertTrue(run.hiddenC == reference.hiddenC, "\(label): carried c differs")
            XCTAssertFalse(run.hiddenH.allSatisfy { $0 == 0 }, "\(label): the carried state must be real")
            // The checkpoint files themselves are byte-identical too.
            for file in ["model.safetensors", "hidden.safetensors", "optimizer.safetensors"] {
                XCTAssertEqual(try Data(contentsOf: run.checkpoint.appendingPathComponent(file)),
                               try Data(contentsOf: reference.checkpoint.appendingPathComponent(file)), "\(label): \(file)")
            }
        }
    }

    func testResumingADistributedCheckpointContinuesExactly() throws {
        let reference = try ClusterFixtures.localReference(config: ClusterFixtures.tinyConfig(steps: 20),
                                                           directory: temporaryDirectory())
        let directory = try temporaryDirectory()
        let first = try distributedRun(config: ClusterFixtures.tinyConfig(steps: 10), threads: [1, 1], directory: directory)
        XCTAssertEqual(first.step, 10)
        XCTAssertFalse(first.values == reference.values)

        // A new coordinator and new workers pick the run up from the checkpoint.
        let resumed = try distributedRun(config: ClusterFixtures.tinyConfig(steps: 20), threads: [1, 1],
                                         directory: directory, resume: true)
        XCTAssertEqual(resumed.step, 20)
        XCTAssertTrue(resumed.values == reference.values, "10 + resume + 10 steps differ from 20 uninterrupted steps")
        XCTAssertTrue(resumed.hiddenH == reference.hiddenH, "carried h after resume differs")
        XCTAssertTrue(resumed.hiddenC == reference.hiddenC, "carried c after resume differs")
    }

    func testResumingWithAnotherWorkerCountContinuesExactly() throws {
        let reference = try ClusterFixtures.localReference(config: ClusterFixtures.tinyConfig(steps: 20),
                                                           directory: temporaryDirectory())
        let directory = try temporaryDirectory()
        _ = try distributedRun(config: ClusterFixtures.tinyConfig(steps: 10), threads: [1, 1], directory: directory)
        // Each of the four new workers gets its own slice of the carried state in its welcome.
        let resumed = try distributedRun(config: ClusterFixtures.tinyConfig(steps: 20), threads: [1, 1, 1, 1],
                                         directory: directory, resume: true)
        XCTAssertTrue(resumed.values == reference.values, "W=2 for 10 steps + W=4 for 10 differs from 20 uninterrupted steps")
        XCTAssertTrue(resumed.hiddenH == reference.hiddenH)
        XCTAssertTrue(resumed.hiddenC == reference.hiddenC)
    }

    func testResumingAnInProcessCheckpointOnWorkersContinuesExactly() throws {
        let reference = try ClusterFixtures.localReference(config: ClusterFixtures.tinyConfig(steps: 20),
                                                           directory: temporaryDirectory())
        let directory = try temporaryDirectory()
        _ = try ClusterFixtures.localReference(config: ClusterFixtures.tinyConfig(steps: 10), directory: directory)
        let resumed = try distributedRun(config: ClusterFixtures.tinyConfig(steps: 20), threads: [1, 1],
                                         directory: directory, resume: true)
        XCTAssertTrue(resumed.values == reference.values, "in-process 10 steps + distributed 10 differs from 20 steps")
        XCTAssertTrue(resumed.hiddenH == reference.hiddenH)
    }

    /// `recur train --workers 2 --threads 1` (coordinator + two `recur work` processes over
    /// ipc) and `--workers 1 --threads 2` (in process) write the same checkpoint bytes.
    func testLocalClusterCommandWritesTheInProcessModelByteForByte() throws {
        let common = ["train", "--steps", "20", "--hidden", "16", "--layers", "2", "--batch", "8", "--seq", "8",
                      "--chunk", "2", "--sample-length", "0", "--heartbeat-timeout", "5"]
        let clusterDirectory = try temporaryDirectory(), localDirectory = try temporaryDirectory()
        let cluster = try launch(common + ["--workers", "2", "--threads", "1", "--checkpoint-dir", clusterDirectory.path])
        XCTAssertEqual(cluster.waitForExit(timeout: 60), 0, cluster.transcript)
        let local = try launch(common + ["--workers", "1", "--threads", "2", "--checkpoint-dir", localDirectory.path])
        XCTAssertEqual(local.waitForExit(timeout: 60), 0, local.transcript)

        XCTAssertNotNil(cluster.stdout.line(containing: ["coordinator ipc://", "2 worker(s)"]), "not distributed:\n\(cluster.transcript)")
        XCTAssertEqual(Self.joinedPids(in: cluster.stdout).count, 2, cluster.transcript)
        XCTAssertNotNil(local.stdout.line(containing: ["in-process, 2 thread(s)"]), local.transcript)
        for file in ["model.safetensors", "hidden.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: clusterDirectory.appendingPathComponent(file))
            let b = try Data(contentsOf: localDirectory.appendingPathComponent(file))
            XCTAssertFalse(a.isEmpty)
            XCTAssertTrue(a == b, "\(file) differs between --workers 2 --threads 1 and --workers 1 --threads 2")
        }
        XCTAssertEqual(try Checkpoint.read(from: clusterDirectory).training?.step, 20)
    }
}
