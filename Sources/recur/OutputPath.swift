import Foundation
import Training

/// Output paths checked before a run reads its corpus or takes a step, so that a typo costs
/// a second, not a run: the directory must be (or become) a writable directory.
enum OutputPath {
    struct Unusable: Error, CustomStringConvertible {
        var flag: String
        var path: String
        var reason: String
        var description: String { "\(flag) \(path): \(reason)" }
    }

    /// `path` is an existing directory or can be made one, and its parent takes new entries
    /// (checkpoints are written as a sibling and renamed over it). The test is the real thing:
    /// a probe directory is made and removed in the nearest existing ancestor.
    static func requireWritableDirectory(_ path: String, flag: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var status = stat()
        if lstat(url.path, &status) == 0, (status.st_mode & S_IFMT) != S_IFDIR {
            throw Unusable(flag: flag, path: path, reason: "exists and is not a directory")
        }
        var ancestor = url.deletingLastPathComponent()
        while lstat(ancestor.path, &status) != 0, ancestor.path != "/" { ancestor.deleteLastPathComponent() }
        let probe = ancestor.appendingPathComponent(".recur-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        guard mkdir(probe, 0o700) == 0 else {
            throw Unusable(flag: flag, path: path, reason: "cannot create anything in \(ancestor.path): \(String(cString: strerror(errno)))")
        }
        rmdir(probe)
    }
}

/// A new run does not write over the checkpoint of another run (another config or corpus)
/// unless --force: the directory may hold days of someone's training.
enum CheckpointGuard {
    static func requireSameRun(_ directory: URL, config: TrainingConfig, corpus: Corpus) throws {
        guard let saved = Checkpoint.savedRun(in: directory) else { return }
        var a = saved.config, b = config
        a.steps = 0
        b.steps = 0
        guard a != b || saved.corpusDigest != corpus.digest else { return }
        throw OutputPath.Unusable(flag: "--checkpoint", path: directory.path,
                                  reason: "holds the checkpoint of another run (step \(saved.step), \(saved.config.cell.rawValue) \(saved.config.layers)×\(saved.config.hidden)); pass --force to overwrite it, --resume to continue it, or another --checkpoint")
    }
}
