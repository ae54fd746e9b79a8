import ArgumentParser

@main
struct Recur: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur",
        abstract: "Train recurrent language models (RNN, LSTM, GRU) from one process to a cluster.")
}
