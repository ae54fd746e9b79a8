import Foundation
import Recurrent
import Training

/// Turns training events into console output: one updating progress line on a terminal,
/// plain lines otherwise, and one JSONL record per step when asked.
final class Console {
    private let isTerminal = isatty(STDOUT_FILENO) != 0
    private let printEvery: Int
    private let jsonl: JSONLWriter?
    private let prefix: String
    private var totalSteps = 0
    private var firstStep = 0
    private var started = DispatchTime.now().uptimeNanoseconds
    private var progressShown = false

    init(logJsonl: String?, append: Bool = false, printEvery: Int = 10, prefix: String = "") throws {
        jsonl = try logJsonl.map { try JSONLWriter(path: $0, append: append) }
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
            jsonl?.write(r)
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
