import Foundation
import XCTest
@testable import Cluster
import Training

/// In-process workers of emulated speeds (`ChunkDelay`) against one coordinator (and, when
/// asked, `recur shard` processes), for the balancing and re-issue tests: run to the end, then
/// compare the bytes with `--workers 1` and read each worker's last block from its log.
struct EmulatedFleet {
    let session: TrainingSession
    let directory: URL
    let reference: ClusterFixtures.Outcome
    let coordinator: CoordinatorHarness
    /// In start order (not rank order): one per delay given.
    let workers: [WorkerHarness]
    let summary: Summary
    /// The `recur shard` processes, ended.
    var shards: [RecurProcess] = []
}

extension ClusterTestCase {
    /// Trains `config` with one worker per entry of `delays` (and `shards` parameter shards,
    /// each a `recur shard` on loopback, when more than 0) and waits for the run and every
    /// worker to end cleanly.
    /// `shardLink` wraps the coordinator's link to each shard (`LateLink`, `LateCommands`).
    func runEmulatedFleet(_ config: TrainingConfig, delays: [ChunkDelay], shards: Int = 0, timeout: Double = 60,
                          shardLink: @escaping (String, ClientTransport) -> ClientTransport = { $1 },
                          file: StaticString = #filePath, line: UInt = #line) throws -> EmulatedFleet {
        let endpoints = try (0..<shards).map { _ in try freeLoopbackEndpoint() }
        let servers = try endpoints.map { try launch(["shard", "--bind", $0, "--heartbeat-timeout", "10"]) }
        let reference = try ClusterFixtures.localReference(config: config, directory: try temporaryDirectory())
        let directory = try temporaryDirectory()
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: directory))
        let coordinator = try startCoordinator(session, workers: delays.count, heartbeatTimeout: shards > 0 ? 10 : 5, shardEndpoints: endpoints,
                                               shardLink: shardLink)
        let workers = try delays.map { try startWorker(coordinator.endpoint, chunkDelay: $0) }
        let summary = try XCTUnwrap(coordinator.wait(timeout: timeout), file: file, line: line).get()
        XCTAssertEqual(summary.steps, config.steps, file: file, line: line)
        for worker in workers {
            XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get(), worker.logs.text, file: file, line: line)
        }
        for server in servers { XCTAssertEqual(server.waitForExit(timeout: 10), 0, server.transcript, file: file, line: line) }
        return EmulatedFleet(session: session, directory: directory, reference: reference, coordinator: coordinator,
                             workers: workers, summary: summary, shards: servers)
    }

    /// The fleet's weights and `model.safetensors` are the `--workers 1` run's, bit for bit.
    func assertSameBytes(_ fleet: EmulatedFleet, file: StaticString = #filePath, line: UInt = #line) throws {
        let outcome = try ClusterFixtures.outcome(of: fleet.session, checkpoint: fleet.directory)
        XCTAssertEqual(outcome.values.map(\.bitPattern), fleet.reference.values.map(\.bitPattern), "balancing changed the weights",
                       file: file, line: line)
        XCTAssertEqual(try Data(contentsOf: fleet.directory.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: fleet.reference.checkpoint.appendingPathComponent("model.safetensors")), file: file, line: line)
    }

    /// Chunks (= streams here) of a worker's last "worker r of W: streams a..<b" line.
    func lastBlock(of worker: WorkerHarness, workers: Int) throws -> Int {
        let line = try XCTUnwrap(worker.logs.lines.last { $0.contains(" of \(workers): streams ") }, worker.logs.text)
        let range = try XCTUnwrap(line.range(of: "streams "))
        let bounds = line[range.upperBound...].prefix { $0 != "," }.components(separatedBy: "..<").compactMap { Int($0) }
        XCTAssertEqual(bounds.count, 2, line)
        return bounds.count == 2 ? bounds[1] - bounds[0] : 0
    }
}
