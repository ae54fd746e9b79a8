import ArgumentParser
import Cluster
import Training

/// `on` or `off`, as a flag's value.
enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off

    var isOn: Bool { self == .on }
}

/// `--balance on|off` of serve and train: chunks follow the workers' measured speed.
struct BalanceFlags: ParsableArguments {
    @Option(help: "With more than one worker: at step boundaries, give each worker a block of chunks sized by its measured compute per chunk, so all finish together; within a step, have an idle worker compute a late worker's chunks too, the first copy counting. Any split and any copy give the same weights.")
    var balance = OnOff.on
}

/// `recur train --workers W`'s hidden testing flag: the local workers' `--emulate-chunk-ms`.
struct LocalEmulationFlags: ParsableArguments {
    @Option(name: .customLong("emulate-chunk-ms"),
            help: ArgumentHelp("Testing only, with --workers > 1: each local worker waits MS ms per chunk after computing; a comma list gives the i-th started worker the i-th value.",
                               valueName: "ms[,ms…]", visibility: .hidden))
    var emulateChunkMs: String?

    /// One wait per local worker (empty: none), checked against the worker count.
    func chunkMilliseconds(workers: Int) throws -> [Double] {
        guard let text = emulateChunkMs else { return [] }
        guard workers > 1 else { throw ValidationError("--emulate-chunk-ms needs --workers above 1 (it slows worker processes)") }
        let values = try text.split(separator: ",", omittingEmptySubsequences: false).map { item -> Double in
            guard let ms = Double(item) else {
                throw ValidationError("--emulate-chunk-ms must be milliseconds, one value or one per worker, comma-separated, got \"\(text)\"")
            }
            _ = try WorkCommand.chunkDelay(milliseconds: ms, slowdown: nil)
            return ms
        }
        guard values.count == 1 || values.count == workers else {
            throw ValidationError("--emulate-chunk-ms gives \(values.count) values for \(workers) workers: give one, or one per worker")
        }
        return values.count == 1 ? Array(repeating: values[0], count: workers) : values
    }
}
