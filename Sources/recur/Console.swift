import ArgumentParser
import Foundation
import Recurrent
import Training

/// Turns training events into console output: one progress line no wider than the terminal
/// (`width`; updating in place on a terminal, every --print-every steps otherwise), evaluation and
/// checkpoint lines, and with --log-jsonl one JSON record per step and per evaluation.
/// The worker split goes to the JSONL, and to the terminal with --verbose.
final class Console {
    private let isTerminal = isatty(STDOUT_FILENO) != 0
    private let printEvery: Int
    private let verbose: Bool
    /// `--log-jsonl`, opened once every check of the run has passed (`openLog`).
    private var jsonl: JSONLFile?
    private let prefix: String
    private var totalSteps = 0
    /// What a step's rate counts: tokens of a language model, examples of a classifier.
    private var unit = "tok/s"
    private var firstStep = 0
    private var started = DispatchTime.now().uptimeNanoseconds
    private var progressShown = false
    /// When the last evaluation-progress line was printed (non-terminal output).
    private var lastEvaluationLine: UInt64 = 0

    /// Columns of output when neither the terminal nor `COLUMNS` says.
    static let defaultWidth = 80

    /// The output's width: the terminal's (TIOCGWINSZ, asked each time, so a resized window
    /// is followed), else `COLUMNS`, else 80.
    var width: Int {
        var size = winsize()
        if isTerminal, ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 0 { return columns }
        return Self.defaultWidth
    }

    init(printEvery: Int = Defaults.printEvery, verbose: Bool = false, prefix: String = "") {
        self.printEvery = max(1, printEvery)
        self.verbose = verbose
        self.prefix = prefix
    }

    private let lock = NSLock()

    /// Opens the `--log-jsonl` file before the run's first event: a new run truncates it, a
    /// resumed one appends.
    func openLog(_ path: String, append: Bool) throws {
        jsonl = try JSONLFile(path: path, append: append)
    }

    /// Prints a whole line (worker output arrives on other threads).
    func line(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        if progressShown { print(""); progressShown = false }
        print(prefix + text)
        fflush(stdout)
    }

    /// Seconds since the run started (the `time` of JSONL records).
    private var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }

    func report(_ event: TrainingEvent) {
        switch event {
        case .started(let s):
            totalSteps = s.steps
            firstStep = s.firstStep
            started = DispatchTime.now().uptimeNanoseconds
            unit = s.labelCount == nil ? "tok/s" : "ex/s"
            if let labels = s.labelCount {
                line("examples \(s.corpusName): \(labels) labels, vocabulary \(s.vocabularySize), train \(s.trainCharacters), validation \(s.validationCharacters)")
                if s.truncatedExamples > 0 { line("\(s.truncatedExamples) training example(s) longer than --max-len \(s.maxLength) are cut to their first \(s.maxLength) characters") }
            } else {
                let scored = s.evaluatedCharacters < s.validationCharacters ? " (evaluations score the first \(s.evaluatedCharacters), --eval-chars)" : ""
                line("corpus \(s.corpusName): \(s.corpusCharacters) chars, vocabulary \(s.vocabularySize), train \(s.trainCharacters), validation \(s.validationCharacters)\(scored)")
            }
            line("model: \(s.parameterCount) parameters; \(s.stepsPerEpoch) steps per epoch; steps \(s.firstStep + 1)…\(s.steps); \(s.mode); kernels \(s.kernelLevel)")
        case .step(let r):
            log(LoggedStep(record: r, time: elapsed))
            let width = self.width
            let text = Self.format(r, total: totalSteps, eta: eta(step: r.step), unit: unit, width: width - prefix.count)
            if isTerminal && !verbose {
                showProgress(text)
            } else if r.step % printEvery == 0 || r.step == firstStep + 1 || r.step == totalSteps {
                line(text)
                if verbose { for detail in Self.details(r, width: width - prefix.count) { line(detail) } }
            }
        case .evaluating(let step, let done, let total):
            // A terminal's progress line shows it; elsewhere a line every 10 seconds at most.
            let text = String(format: "step %d evaluating: %d of %d chars (%.0f%%)", step, done, total, 100 * Double(done) / Double(max(total, 1)))
            if isTerminal && !verbose {
                showProgress(String(text.prefix(max(1, width - prefix.count))))
            } else if DispatchTime.now().uptimeNanoseconds - lastEvaluationLine >= 10_000_000_000 {
                lastEvaluationLine = DispatchTime.now().uptimeNanoseconds
                line(text)
            }
        case .evaluation(let step, let result):
            log(EvaluationRecord(step: step, result: result, time: elapsed))
            if let metrics = result.classification {
                let baseline = metrics.majorityBaseline.map { String(format: " (majority baseline %.1f%%)", 100 * $0) } ?? ""
                line(String(format: "step %d validation loss %.4f nats/example, accuracy %.1f%%%@ over %d examples",
                            step, result.natsPerCharacter, 100 * metrics.accuracy, baseline, result.characters))
                if verbose || step == totalSteps { line(metrics.table) }
            } else {
                line(String(format: "step %d validation loss %.4f nats/char (%.4f bits/char) over %d chars",
                            step, result.natsPerCharacter, result.bitsPerCharacter, result.characters))
            }
        case .checkpoint(let step, let path):
            line("step \(step) checkpoint \(path)")
        case .message(let text):
            line(text)
        case .finished(let s):
            let train = s.finalTrainLoss.map { String(format: "%.4f", $0) } ?? "-"
            let validation = s.validation.map { v in
                v.classification.map { String(format: "%.4f nats/example, accuracy %.1f%%", v.natsPerCharacter, 100 * $0.accuracy) }
                    ?? String(format: "%.4f nats/char (%.4f bits/char)", v.natsPerCharacter, v.bitsPerCharacter)
            } ?? "-"
            // The steps this invocation ran; a resumed run says where it started.
            let ran = s.steps - firstStep, span = firstStep > 0 ? " (steps \(firstStep + 1)…\(s.steps))" : ""
            line("done: \(ran) steps\(span) in \(Self.duration(s.wallSeconds)); train loss \(train); validation loss \(validation); \(Int(s.tokensPerSecond)) \(unit) median; checkpoint \(s.checkpoint ?? "none")")
            if let b = s.balancing {
                line("balancing: \(b.rebalances) rebalance(s) moved \(b.movedChunks) chunk(s); \(b.reissuedChunks) chunk(s) re-issued to idle workers")
            }
        }
    }

    /// The terminal's one progress line, overwritten in place (the next `line` starts below it).
    private func showProgress(_ text: String) {
        lock.lock()
        print("\r\u{1B}[K" + prefix + text, terminator: "")
        fflush(stdout)
        progressShown = true
        lock.unlock()
    }

    private func log<T: Encodable>(_ record: T) {
        guard let jsonl else { return }
        do {
            try jsonl.write(record)
        } catch {
            Self.stop(because: error)
        }
    }

    /// The run cannot keep its promise of a log line per step (disk full, say): one line on
    /// stderr and exit 1. Checkpoints are written atomically, so the last one stays usable.
    static func stop(because error: Error) -> Never {
        FileHandle.standardError.write(Data("recur: \(error); stopping the run (the last checkpoint is kept)\n".utf8))
        exit(1)
    }

    /// `step 12/500 | loss 2.3456 | gnorm 1.23 | lr 2.0e-03 | 45.1k tok/s | 90.1 ms | ETA 1m02s`,
    /// and with workers the step's compute/communicate/wait split, ` (c/m/w 80.0/8.0/2.1)`
    /// (in-process, communicate and wait are zero). Never wider than `width`: numbers shrink
    /// their decimals as they grow, and a narrow line leaves out, in this order, the split, the
    /// step time (the rate says it too), the gradient norm, the learning rate and the rate; what
    /// still does not fit is cut. At 80 columns an in-process line keeps all but the step time.
    static func format(_ r: StepRecord, total: Int, eta: String, unit: String = "tok/s", width: Int = defaultWidth) -> String {
        var fields: [(text: String, dropOrder: Int)] = [
            ("step \(r.step)/\(total)", 9), ("loss \(String(format: "%.4f", r.loss))", 9),
            ("gnorm \(compact(r.gradientNorm))", 3), ("lr \(String(format: "%.1e", Double(r.learningRate)))", 4),
            ("\(compact(r.tokensPerSecond)) \(unit)", 5), ("\(milliseconds(r.stepSeconds)) ms", 2),
        ]
        if r.workers?.isEmpty == false {
            fields.append(("(c/m/w \(milliseconds(r.computeSeconds))/\(milliseconds(r.communicateSeconds))/\(milliseconds(r.waitSeconds)))", 1))
        }
        fields.append(("ETA \(eta)", 9))
        func joined() -> String {
            fields.map(\.text).joined(separator: " | ").replacingOccurrences(of: " ms | (c/m/w", with: " ms (c/m/w")
        }
        var text = joined()
        for order in 1...5 where text.count > width {
            fields.removeAll { $0.dropOrder == order }
            text = joined()
        }
        return text.count <= width ? text : String(text.prefix(max(1, width)))
    }

    /// --verbose: the epoch and each worker's compute/communicate/wait in ms, in lines of at
    /// most `width`.
    static func details(_ r: StepRecord, width: Int = defaultWidth) -> [String] {
        var lines = ["  epoch \(r.epoch)"]
        for w in r.workers ?? [] {
            let item = " | w\(w.rank) \(milliseconds(w.computeSeconds))/\(milliseconds(w.communicateSeconds))/\(milliseconds(w.waitSeconds))"
            if lines[lines.count - 1].count + item.count > width { lines.append(" ") }
            lines[lines.count - 1] += item
        }
        return lines
    }

    /// 3–4 significant characters: 0.123, 12.3, 1234, 12.3k, 1.23M.
    static func compact(_ x: Double) -> String {
        guard x.isFinite else { return "\(x)" }
        let a = abs(x)
        if a < 10 { return String(format: "%.3f", x) }
        if a < 100 { return String(format: "%.1f", x) }
        if a < 10_000 { return String(format: "%.0f", x) }
        if a < 1_000_000 { return String(format: "%.1fk", x / 1e3) }
        if a < 1_000_000_000 { return String(format: "%.2fM", x / 1e6) }
        return String(format: "%.2e", x)
    }

    /// Seconds as milliseconds with one decimal below 100 ms, whole above, seconds above 100 s.
    static func milliseconds(_ seconds: Double) -> String {
        let ms = seconds * 1e3
        if ms < 100 { return String(format: "%.1f", ms) }
        if ms < 100_000 { return String(format: "%.0f", ms) }
        return String(format: "%.0fk", ms / 1e3)
    }

    private func eta(step: Int) -> String {
        let done = step - firstStep
        guard done > 0 else { return "?" }
        return Self.duration(elapsed / Double(done) * Double(totalSteps - step))
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e7 else { return ">100d" }
        let s = Int(seconds.rounded())
        if s < 60 { return String(format: "%.1fs", seconds) }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }
}

/// A `--log-jsonl` step record: the loop's `StepRecord` fields, `kind` "step" and `time`
/// (seconds since this process started the run).
struct LoggedStep: Encodable {
    var record: StepRecord
    var time: Double

    enum Keys: String, CodingKey { case kind, time }

    func encode(to encoder: Encoder) throws {
        try record.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode("step", forKey: .kind)
        try container.encode(time, forKey: .time)
    }
}

/// A `--log-jsonl` evaluation record: `{"kind":"evaluation","step":…,"validationLoss":nats,
/// "validationBitsPerCharacter":…,"characters":…,"time":…}`.
struct EvaluationRecord: Encodable {
    var kind = "evaluation"
    var step: Int
    var validationLoss: Double
    var validationBitsPerCharacter: Double
    var characters: Int
    var time: Double
    /// A classifier's: accuracy, majority baseline, per-class precision/recall/F1, confusion
    /// matrix (then `characters` counts examples and the loss is per example).
    var classification: ClassificationMetrics?

    init(step: Int, result: Evaluator.Result, time: Double) {
        self.step = step
        validationLoss = result.natsPerCharacter
        validationBitsPerCharacter = result.bitsPerCharacter
        characters = result.characters
        classification = result.classification
        self.time = time
    }
}

/// `--log-jsonl`: one JSON object per line, each written whole with write(2) (retrying EINTR
/// and short writes), so a failure such as ENOSPC is an error value with errno, not a
/// Foundation trap. A new run truncates the file; a resumed run appends.
final class JSONLFile {
    let path: String
    private let descriptor: Int32
    private let encoder = JSONEncoder()

    struct OpenError: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "--log-jsonl \(path): cannot open for writing: \(String(cString: strerror(errno)))" }
    }

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
            throw OpenError(path: path, errno: errno)
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
