import ArgumentParser
import Cluster
import Foundation
import Training

/// `recur launch`: one training job over ssh on the hosts of a hostfile (what `cluster/launch`
/// runs). The launcher reads its own command line (`LaunchMain`, in the Cluster module):
/// its flags and messages are those of the shell launcher it replaced, and everything after
/// `--` goes to `recur serve` untouched. `Recur.main` hands it the raw arguments.
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Run one training job over ssh on the hosts of a hostfile (see `recur launch --help`).")

    @Argument(parsing: .captureForPassthrough, help: "--hostfile FILE [options] [-- recur serve flags]")
    var arguments: [String] = []

    func run() throws {
        Self.main(raw: arguments)
    }

    /// `[--program-name NAME] [--slurm] ARGUMENTS…`: the name the messages start with (the
    /// scripts pass `cluster/launch` or `slurm.sbatch`); `--slurm`: the job of a Slurm batch
    /// step (cluster/slurm.sbatch), serve flags only.
    static func main(raw: [String]) -> Never {
        var arguments = raw, program = "recur launch"
        if arguments.count >= 2, arguments[0] == "--program-name" {
            program = arguments[1]
            arguments.removeFirst(2)
        }
        if arguments.first == "--slurm" {
            Foundation.exit(SlurmDriver.main(program: program, binary: ownPath, arguments: Array(arguments.dropFirst()),
                                             shardMessageBytes: shardMessageBytes))
        }
        Foundation.exit(LaunchMain.run(arguments, program: program, defaultBinary: ownPath, shardMessageBytes: shardMessageBytes))
    }

    /// The shards' message bound (`ShardServer.maxMessageBytes`, the size of the run's setup)
    /// from the serve flags, as `recur serve` would read the model: here, where the launcher
    /// runs. nil when that fails (the data or the checkpoint of a resumed run is not readable
    /// on this host); the shards then take their default and the coordinator names a shard
    /// whose setup is larger. The flags themselves are checked by `recur serve`.
    static func shardMessageBytes(serveArguments: [String]) -> Int? {
        guard let serve = try? ServeCommand.parse(serveArguments),
              let setup = try? RunSetup(model: serve.model, data: serve.data, optimization: serve.optimization, chunk: serve.chunk,
                                        checkpoints: serve.checkpoints, log: { _ in }),
              let plan = try? RunPlan(config: setup.config, corpus: setup.corpus, validation: setup.validation) else { return nil }
        return ShardServer.maxMessageBytes(for: plan)
    }

    /// This executable: the local binary unless --binary names another.
    static var ownPath: String {
        let invoked = CommandLine.arguments[0]
        if invoked.hasPrefix("/") { return invoked }
        return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? invoked
    }
}
