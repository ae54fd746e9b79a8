import Foundation
import TestSupport
import XCTest

/// `--resume` and `--init-from` read a checkpoint through one reader (`StartingCheckpoint`):
/// the same unusable checkpoint gives both the same line and exit code.
extension TrainerUXTests {
    func testResumeAndInitFromRefuseTheSameBrokenCheckpointInTheSameWords() throws {
        XCTAssertEqual(try train(["--steps", "2"]).status, 0)
        let directory = scratch.child("ckpt")
        let model = directory.appendingPathComponent("model.safetensors")
        try Data(try Data(contentsOf: model).prefix(40)).write(to: model)
        let resume = try run(["train", "--resume", directory.path, "--steps", "4", "--workers", "1", "--sample-length", "0"])
        let initFrom = try run(["train", "--init-from", directory.path, "--steps", "4", "--workers", "1", "--sample-length", "0",
                                "--checkpoint", scratch.child("new").path])
        assertOneLineError(resume, mentions: [model.path], status: 65)
        assertOneLineError(initFrom, mentions: [model.path], status: 65)
        XCTAssertEqual(resume.standardError, initFrom.standardError)
    }
}
