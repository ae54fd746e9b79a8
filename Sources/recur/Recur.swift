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
        Contracts and file formats: docs/DESIGN.md; examples: README.md.
        """,
        subcommands: [TrainCommand.self, ServeCommand.self, WorkCommand.self, ShardCommandLine.self, SampleCommand.self,
                      EvalCommand.self, SummaryCommand.self, BenchCommand.self, KeygenCommand.self])

    /// Errors end in one line on stderr and a non-zero exit; help and version print as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is CleanExit {
                exit(withError: error)
            }
            let line = error is ExitCode ? "" : UserMessage.text(for: error) ?? Self.message(for: error)
            if !line.isEmpty { FileHandle.standardError.write(Data("recur: \(line)\n".utf8)) }
            if let stopped = error as? StopRequest.Stopped { Foundation.exit(stopped.exitCode) }  // 130/143 after a signal
            Foundation.exit(code.rawValue == 0 ? 1 : code.rawValue)
        }
    }
}

extension CellType: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
