import Foundation
import Recurrent
import TestSupport
import Training
import XCTest

/// `StartingCheckpoint`, the one reader of the checkpoint a run resumes or starts from: the
/// same bad directory gives `--resume` and `--init-from` the same error, whether the
/// executable reads it (`RunSetup`) or a session does; and the config checks of both.
final class StartingCheckpointTests: XCTestCase {
    typealias F = TrainingFixtures

    let corpus = F.playCorpus(characters: 800)
    let config = F.config(cell: .lstm, hidden: 6, streams: 4, window: 5, chunkStreams: 2, steps: 2)

    /// A finished two-step run's checkpoint in `directory`/run.
    func writeRun(in directory: TemporaryDirectory) throws -> URL {
        var options = RunOptions()
        options.checkpointDirectory = directory.child("run")
        try F.run(TrainingSession(config: config, corpus: corpus, options: options))
        return directory.child("run")
    }

    /// The message of `body`'s error ("" when it throws none).
    func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch {
            return "\(error)"
        }
    }

    /// Each way of breaking a checkpoint, as a change of its files.
    static let breakages: [(name: String, apply: (URL) throws -> Void)] = [
        ("model file cut short", { dir in
            let file = dir.appendingPathComponent("model.safetensors")
            try Data(try Data(contentsOf: file).prefix(40)).write(to: file)
        }),
        ("state.json not JSON", { dir in try Data("{not json".utf8).write(to: dir.appendingPathComponent("state.json")) }),
        ("optimizer file missing", { dir in try FileManager.default.removeItem(at: dir.appendingPathComponent("optimizer.safetensors")) }),
        ("a weight NaN", { dir in
            let file = dir.appendingPathComponent("model.safetensors")
            var (tensors, metadata) = try Safetensors.decode(Array(try Data(contentsOf: file)))
            tensors["head.bias"]?.values[0] = .nan
            try Data(Safetensors.encode(tensors: tensors.values.sorted { $0.name < $1.name }, metadata: metadata)).write(to: file)
        }),
    ]

    func testResumeAndInitFromGiveTheSameMessageForTheSameBadCheckpoint() throws {
        for (name, apply) in Self.breakages {
            let directory = TemporaryDirectory()
            let run = try writeRun(in: directory)
            try apply(run)
            let resume = message { _ = try StartingCheckpoint.read(run, for: .resume) }
            let initFrom = message { _ = try StartingCheckpoint.read(run, for: .initFrom) }
            XCTAssertFalse(resume.isEmpty, "\(name): read without an error")
            XCTAssertEqual(resume, initFrom, name)
            XCTAssertTrue(resume.contains(run.path), "\(name): \(resume)")
            XCTAssertFalse(resume.contains("\n"), "\(name): one line: \(resume)")
            // A session reads through the same reader: the same words.
            var resuming = RunOptions()
            resuming.checkpointDirectory = run
            resuming.resume = true
            var starting = RunOptions()
            starting.initFrom = run
            XCTAssertEqual(message { _ = try TrainingSession(config: config, corpus: corpus, options: resuming) }, resume, name)
            XCTAssertEqual(message { _ = try TrainingSession(config: config, corpus: corpus, options: starting) }, resume, name)
        }
    }

    func testResumeNeedsATrainingCheckpointAndInitFromTakesABareModel() throws {
        let directory = TemporaryDirectory()
        let run = try writeRun(in: directory)
        let bare = directory.child("bare")
        var checkpoint = try Checkpoint.read(from: run)
        checkpoint.training = nil
        try checkpoint.write(to: bare)
        for missing in [bare, directory.child("absent")] {
            XCTAssertThrowsError(try StartingCheckpoint.read(missing, for: .resume)) { error in
                XCTAssertEqual(error as? TrainingError, .nothingToResume(path: missing.path))
            }
        }
        let start = try StartingCheckpoint.read(bare, for: .initFrom)
        XCTAssertNil(start.resumedRun)
        XCTAssertEqual(start.baseConfig(task: nil).hidden, 6, "a bare model gives its shape")
        XCTAssertEqual(try StartingCheckpoint.read(run, for: .resume).resumedRun?.step, 2)
    }

    /// A resumed run keeps all but the schedule; a run from weights keeps the weights' shape,
    /// except a classifier from a language model. The error names the first field that differs.
    func testCompatibilityNamesTheFirstDifferingField() throws {
        let directory = TemporaryDirectory()
        let run = try writeRun(in: directory)
        let resume = try StartingCheckpoint.read(run, for: .resume)
        let initFrom = try StartingCheckpoint.read(run, for: .initFrom)
        var longer = config
        longer.steps = 9
        longer.optimizer.learningRate = 0.5
        XCTAssertNoThrow(try resume.requireCompatible(longer))
        var reseeded = config
        reseeded.seed = 99
        XCTAssertThrowsError(try resume.requireCompatible(reseeded)) { error in
            XCTAssertEqual(error as? TrainingError, .startMismatch(.seed, saved: "7", requested: "99", path: run.path, resumed: true))
        }
        XCTAssertNoThrow(try initFrom.requireCompatible(reseeded), "a new run may change the seed")
        var wider = config
        wider.hidden = 9
        XCTAssertThrowsError(try initFrom.requireCompatible(wider)) { error in
            XCTAssertEqual(error as? TrainingError, .startMismatch(.hidden, saved: "6", requested: "9", path: run.path, resumed: false))
        }
        var classifier = config
        classifier.task = .classify
        classifier.bidirectional = true
        XCTAssertNoThrow(try initFrom.requireCompatible(classifier), "a classifier may start from a language model")
    }
}
