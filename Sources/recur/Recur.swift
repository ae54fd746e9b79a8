import ArgumentParser
import Cluster
import Foundation
import Recurrent
import Training

@main
struct Recur: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur",
        abstract: "Train recurrent language models (RNN, LSTM, GRU) from one process to a cluster.",
        discussion: """
        Start with `recur train` (a 2-layer LSTM on the built-in corpus, then a sample).
        Exit codes: 0 success, 64 bad flag or value, 65 unusable input (corpus, checkpoint), \
        73 unusable output path, 1 a run that failed, 128+N after signal N.
        Contracts and file formats: docs/DESIGN.md; examples: README.md.
        """,
        version: "recur \(Recur.version)",
        subcommands: [TrainCommand.self, ServeCommand.self, WorkCommand.self, ShardCommandLine.self, SampleCommand.self,
                      EvalCommand.self, PredictCommand.self, SummaryCommand.self, BenchCommand.self, KeygenCommand.self,
                      LaunchCommand.self])

    /// The release this binary is (`recur --version`).
    static let version = "0.3.0-dev"

    /// Errors end in one line on stderr and the exit code of their kind; help and version
    /// print as usual.
    static func main() {
        if let problem = KernelLevelSetting.apply() {
            FileHandle.standardError.write(Data("recur: \(problem)\n".utf8))
            Foundation.exit(ExitStatus.usage.rawValue)
        }
        // The launcher reads its own command line (flags of cluster/launch, serve flags after --).
        if CommandLine.arguments.dropFirst().first == "launch" {
            LaunchCommand.main(raw: Array(CommandLine.arguments.dropFirst(2)))
        }
        do {
            var command = try parseAsRoot(Arguments.normalize(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is CleanExit {
                exit(withError: error)
            }
            let line = error is ExitCode ? "" : UserMessage.text(for: error) ?? Self.message(for: error)
            if !line.isEmpty { FileHandle.standardError.write(Data("recur: \(line)\n".utf8)) }
            if let stopped = error as? StopRequest.Stopped { Foundation.exit(stopped.exitCode) }  // 130/143 after a signal
            if error is ExitCode { Foundation.exit(code.rawValue) }
            Foundation.exit(ExitStatus.of(error, parserCode: code.rawValue).rawValue)
        }
    }
}

/// One exit code per kind of error (docs/DESIGN.md, "Exit codes and errors"); the sysexits
/// values where one fits.
enum ExitStatus: Int32 {
    /// The run started and failed: divergence, a lost worker or coordinator, a port in use.
    case failure = 1
    /// A flag or its value is wrong (EX_USAGE), whatever checked it.
    case usage = 64
    /// An input is missing or unusable: corpus, checkpoint, key file content (EX_DATAERR).
    case input = 65
    /// An output path cannot be written (EX_CANTCREAT).
    case output = 73

    static func of(_ error: Error, parserCode: Int32) -> ExitStatus {
        switch error {
        case is ValidationError, is MemoryBudgetError: return .usage
        case TrainingError.invalidValue, TrainingError.missingSetting, TrainingError.startMismatch: return .usage
        case is OutputPath.Unusable, is JSONLFile.OpenError: return .output
        case TrainingError.notADirectory, TrainingError.unwritable, AtomicDirectoryError.targetNotDirectory: return .output
        case is CorpusError, is VocabularyError, is SafetensorsError: return .input
        case TrainingError.checkpoint, TrainingError.nothingToResume, TrainingError.vocabulary, TrainingError.unreadableConfig:
            return .input
        default:
            return parserCode == ExitCode.validationFailure.rawValue ? .usage : .failure
        }
    }
}

extension CellType: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension Pooling: ExpressibleByArgument {}
