import ArgumentParser
import Foundation
import Recurrent
import Training

/// Turns training events into console output: one updating progress line on a terminal,
/// plain lines otherwise, and one JSONL record per step when asked.
final class Console {
    private let isTerminal = isatty(STDOUT_FILENO) != 0
    private let printEvery: Int
    private let jsonl: JSONLFile?
    private let prefix: String
    private var totalSteps = 0
    private var firstStep = 0
    private var started = DispatchTime.now().uptimeNanoseconds
    private var progressShown = false

    init(logJsonl: String?, append: Bool = false, printEvery: Int = 10, prefix: String = "") throws {
        jsonl = try logJsonl.map { try JSONLFile(path: $0, append: append) }
        self.printEvery = max(1, printEvery)
        self.prefix = prefix
    }

    private let lock = NSLock()

    /// Prints a whole line (worker output arrives on other threads).
    func line(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        if progressShown { print(""); progressShown = false }
        print(prefix + text)
        fflush(stdout)
    }

    func report(_ event: TrainingEvent) {
        switch event {
        case .started(let s):
            totalSteps = s.steps
            firstStep = s.firstStep
            started = DispatchTime.now().uptimeNanoseconds
            line("corpus \(s.corpusName): \(s.corpusCharacters) chars, vocabulary \(s.vocabularySize), train \(s.trainCharacters), validation \(s.validationCharacters)")
            line("model: \(s.parameterCount) parameters; \(s.stepsPerEpoch) steps per epoch; steps \(s.firstStep + 1)…\(s.steps); \(s.mode); BLAS OpenBLAS \(s.blasCore)")
        case .step(let r):
            if let jsonl {
                do {
                    try jsonl.write(r)
                } catch {
                    Self.stop(because: error)
                }
            }
            let text = Self.format(r, total: totalSteps) + " | ETA " + eta(step: r.step)
            if isTerminal {
                lock.lock()
                print("\r\u{1B}[K" + prefix + text, terminator: "")
                fflush(stdout)
                progressShown = true
                lock.unlock()
            } else if r.step % printEvery == 0 || r.step == firstStep + 1 || r.step == totalSteps {
                line(text)
            }
        case .evaluation(let step, let result):
            line(String(format: "step %d validation loss %.4f nats/char (%.4f bits/char) over %d chars",
                        step, result.natsPerCharacter, result.bitsPerCharacter, result.characters))
        case .checkpoint(let step, let path):
            line("step \(step) checkpoint \(path)")
        case .message(let text):
            line(text)
        case .finished(let s):
            let train = s.finalTrainLoss.map { String(format: "%.4f", $0) } ?? "-"
            let validation = s.validation.map { String(format: "%.4f nats/char (%.4f bits/char)", $0.natsPerCharacter, $0.bitsPerCharacter) } ?? "-"
            line("done: \(s.steps) steps in \(Self.duration(s.wallSeconds)); train loss \(train); validation loss \(validation); \(Int(s.tokensPerSecond)) tok/s median; checkpoint \(s.checkpoint ?? "none")")
        }
    }

    /// The run cannot keep its promise of a log line per step (disk full, say): one line on
    /// stderr and exit 1. Checkpoints are written atomically, so the last one stays usable.
    static func stop(because error: Error) -> Never {
        FileHandle.standardError.write(Data("recur: \(error); stopping the run (the last checkpoint is kept)\n".utf8))
        exit(1)
    }

    /// `step 12/500 | epoch 0 | loss 2.3456 | gnorm 1.234 | lr 2.0e-03 | 45123 tok/s | 90.1 ms (compute 88.0, communicate 0.0, wait 0.0)`
    /// With workers, each one's compute/communicate/wait in ms follows: `| w0 60.1/0.6/3.1 …`.
    static func format(_ r: StepRecord, total: Int) -> String {
        var line = String(format: "step %d/%d | epoch %d | loss %.4f | gnorm %.3f | lr %.1e | %.0f tok/s | %.1f ms (compute %.1f, communicate %.1f, wait %.1f)",
                          r.step, total, r.epoch, r.loss, r.gradientNorm, Double(r.learningRate), r.tokensPerSecond,
                          r.stepSeconds * 1e3, r.computeSeconds * 1e3, r.communicateSeconds * 1e3, r.waitSeconds * 1e3)
        if let workers = r.workers, !workers.isEmpty {
            line += " |" + workers.map {
                String(format: " w%d %.1f/%.1f/%.1f", $0.rank, $0.computeSeconds * 1e3, $0.communicateSeconds * 1e3, $0.waitSeconds * 1e3)
            }.joined()
        }
        return line
    }

    private func eta(step: Int) -> String {
        let done = step - firstStep
        guard done > 0 else { return "?" }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return Self.duration(elapsed / Double(done) * Double(totalSteps - step))
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return String(format: "%.1fs", seconds) }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }
}

/// `--log-jsonl`: one JSON object per line, each written whole with write(2) (retrying EINTR
/// and short writes), so a failure such as ENOSPC is an error value with errno, not a
/// Foundation trap. A new run truncates the file; a resumed run appends.
final class JSONLFile {
    let path: String
    private let descriptor: Int32
    private let encoder = JSONEncoder()

    struct WriteError: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "cannot write --log-jsonl \(path): \(String(cString: strerror(errno)))" }
    }

    init(path: String, append: Bool) throws {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC)
        var fd: Int32
        repeat { fd = open(path, flags, 0o644) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            throw ValidationError("cannot open --log-jsonl file \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
        descriptor = fd
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    }

    deinit { close(descriptor) }

    func write<T: Encodable>(_ record: T) throws {
        var bytes = Array(try encoder.encode(record))
        bytes.append(0x0A)
        try bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let n = Glibc.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw WriteError(path: path, errno: errno)
                }
                written += n
            }
        }
    }
}
