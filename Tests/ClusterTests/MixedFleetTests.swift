import Foundation
import Recurrent
import XCTest

/// One job whose workers run the Float kernels at different levels (`RECUR_KERNEL_LEVEL` per
/// worker process, as on a fleet of unlike CPUs) ends with the bytes of `--workers 1`.
final class MixedFleetTests: ClusterTestCase {
    private let model = ["--cell", "lstm", "--hidden", "40", "--layers", "2", "--batch", "12", "--seq", "16", "--chunk", "2",
                         "--steps", "8", "--seed", "3"]

    func testThreeWorkersAtThreeKernelLevelsGiveTheSingleWorkerBytes() throws {
        // avx512 / avx2 / portable where the CPU has AVX-512; on an AVX2 CPU, avx2 twice.
        let top: KernelLevel = KernelLevel.cpu == .avx512 ? .avx512 : .avx2
        let levels: [KernelLevel] = [top, .avx2, .portable]
        guard KernelLevel.cpu != .portable else { throw XCTSkip("this CPU has only the portable kernels") }

        let reference = try temporaryDirectory()
        let train = try launch(["train", "--workers", "1", "--threads", "2", "--sample-length", "0",
                                "--checkpoint-dir", reference.path] + model)
        XCTAssertEqual(train.waitForExit(timeout: 120), 0, train.transcript)

        let directory = try temporaryDirectory()
        let endpoint = try freeLoopbackEndpoint()
        let serve = try launch(["serve", "--bind", endpoint, "--workers", "3", "--checkpoint-dir", directory.path,
                                "--heartbeat-timeout", "10"] + model)
        let workers = try levels.map { level in
            try launch(["work", "--connect", endpoint, "--threads", "1", "--heartbeat-timeout", "10"],
                       environment: ["RECUR_KERNEL_LEVEL": level.description])
        }
        XCTAssertEqual(serve.waitForExit(timeout: 120), 0, serve.transcript)
        for (worker, level) in zip(workers, levels) {
            XCTAssertEqual(worker.waitForExit(timeout: 20), 0, worker.transcript)
            XCTAssertNotNil(worker.stdout.line(containing: ["of 3: streams", "kernels \(level)"]), worker.transcript)
        }
        let bytes = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(bytes, try Data(contentsOf: reference.appendingPathComponent("model.safetensors")),
                       "workers at \(levels.map(\.description)) changed the weights")
    }
}
