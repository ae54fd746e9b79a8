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

    /// `path` can be created or opened for appending (its directory exists and takes new
    /// files, or the file is writable), found without creating it.
    static func requireWritableFile(_ path: String, flag: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var status = stat()
        if lstat(url.path, &status) == 0 {
            if (status.st_mode & S_IFMT) == S_IFDIR { throw Unusable(flag: flag, path: path, reason: "is a directory") }
            guard access(url.path, W_OK) == 0 else { throw Unusable(flag: flag, path: path, reason: "cannot open for writing: \(String(cString: strerror(errno)))") }
            return
        }
        let parent = url.deletingLastPathComponent().path
        guard access(parent, W_OK | X_OK) == 0 else {
            throw Unusable(flag: flag, path: path, reason: "cannot create it in \(parent): \(String(cString: strerror(errno)))")
        }
    }
}

/// A new run never writes over another run. `--checkpoint DIR` that already holds a
/// checkpoint (or anything else), or named checkpoints beside it (`DIR-step-…`, `DIR-best`),
/// is refused unless the run continues it (`--resume`) or `--force` moves it all aside, kept.
enum CheckpointGuard {
    /// What of an earlier run sits at `directory`: the directory (when not empty) and the
    /// named checkpoints and best link beside it.
    static func earlierRun(at directory: URL) -> [URL] {
        let latest = directory.standardizedFileURL
        let parent = latest.deletingLastPathComponent(), name = latest.lastPathComponent
        var found: [URL] = []
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: latest.path), !entries.isEmpty { found.append(latest) }
        let siblings = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for sibling in siblings.sorted() where sibling.hasPrefix(name + "-step-") || sibling == name + "-best" {
            found.append(parent.appendingPathComponent(sibling))
        }
        return found
    }

    /// Refuses a new run's `directory` that holds an earlier run, in one line that names it
    /// and the ways on.
    static func requireFree(_ directory: URL) throws {
        let earlier = earlierRun(at: directory)
        guard !earlier.isEmpty else { return }
        let what: String
        if let saved = Checkpoint.savedRun(in: directory) {
            what = "the checkpoint of a run at step \(saved.step) of \(saved.config.steps) (\(saved.config.cell.rawValue) \(saved.config.layers)×\(saved.config.hidden))"
        } else if earlier.first == directory.standardizedFileURL {
            what = "files that are not a finished checkpoint"
        } else {
            what = "no checkpoint, but named checkpoints of a run beside it (\(earlier[0].lastPathComponent))"
        }
        throw OutputPath.Unusable(flag: "--checkpoint", path: directory.path,
                                  reason: "holds \(what); continue it with --resume, start a new run there with --force (the earlier one is moved aside, kept), or choose another --checkpoint")
    }

    /// `--force`: moves everything of the earlier run into `DIR.replaced-YYYYMMDD-HHMMSS/`
    /// beside DIR, under the same names (so `--resume` of the moved DIR still works and the
    /// best link still points at its target). Returns that folder, nil when there was nothing.
    static func moveAside(_ directory: URL) throws -> URL? {
        let earlier = earlierRun(at: directory)
        guard !earlier.isEmpty else { return nil }
        let latest = directory.standardizedFileURL
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let base = latest.path + ".replaced-" + formatter.string(from: Date())
        var aside = URL(fileURLWithPath: base), copy = 1
        while FileManager.default.fileExists(atPath: aside.path) {   // two forced runs in one second
            copy += 1
            aside = URL(fileURLWithPath: base + "-\(copy)")
        }
        guard mkdir(aside.path, 0o755) == 0 else {
            throw OutputPath.Unusable(flag: "--checkpoint", path: directory.path, reason: "cannot move the earlier run aside into \(aside.path): \(String(cString: strerror(errno)))")
        }
        for url in earlier {
            guard rename(url.path, aside.appendingPathComponent(url.lastPathComponent).path) == 0 else {
                throw OutputPath.Unusable(flag: "--checkpoint", path: directory.path, reason: "cannot move \(url.path) aside into \(aside.path): \(String(cString: strerror(errno)))")
            }
        }
        return aside
    }
}
