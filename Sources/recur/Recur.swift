import ArgumentParser
import Foundation
import Recurrent

@main
struct Recur: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur",
        abstract: "Train recurrent language models (RNN, LSTM, GRU) from one process to a cluster.",
        subcommands: [KernelBench.self])
}

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kbench")
    @Option var cell: CellType = .lstm
    @Option var layers = 2
    @Option var hidden = 256
    @Option var vocab = 65
    @Option var streams = 64
    @Option var seq = 64
    @Option var iterations = 10
    func run() throws {
        BLASInfo.useSingleThread()
        let r = KernelBenchmark.run(config: ModelConfig(cell: cell, vocabularySize: vocab, hiddenSize: hidden, layerCount: layers),
                                    streams: streams, window: seq, iterations: iterations)
        let data = try JSONEncoder().encode(r)
        print(String(decoding: data, as: UTF8.self))
    }
}
extension CellType: ExpressibleByArgument {}
