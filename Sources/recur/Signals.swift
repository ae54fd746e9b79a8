import Foundation

/// SIGINT, SIGTERM and SIGHUP become a stop request (exit 130/143/129), handled at the next
/// step boundary after a checkpoint.
enum Signals {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    static func forward(_ handler: @escaping (String, Int32) -> Void) {
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler("interrupted by \(name)", 128 + number) }
            source.resume()
            sources.append(source)
        }
    }
}
