import Foundation
import Recurrent
import Training
import Wire

/// A worker's links to the parameter shards of a sharded run (the Welcome names them): it
/// says hello to each with its rank, assembles the weights of a step from every shard's
/// range, and pushes each range of every node's gradient sum to the shard that owns it.
final class WorkerShards {
    let messengers: [ClientMessenger]
    /// Shard k owns slab elements bounds[k] ..< bounds[k + 1].
    let bounds: [Int]
    /// Shards whose weights for the awaited step arrived, and whether any said "epoch start".
    private var received = Set<Int>()
    private var resetState = false

    init(welcome: Welcome, layout: ParameterLayout, hello: Hello, connect: (String) throws -> ClientTransport,
         log: @escaping (String) -> Void) throws {
        let bounds = welcome.shardBounds.map { Int(clamping: $0) }
        guard welcome.shardEndpoints.count >= 2, bounds.count == welcome.shardEndpoints.count + 1,
              bounds.first == 0, bounds.last == layout.count, zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw ClusterError.protocolViolation("welcome names \(welcome.shardEndpoints.count) shards with bounds \(welcome.shardBounds) for \(layout.count) parameters")
        }
        self.bounds = bounds
        messengers = try welcome.shardEndpoints.map { ClientMessenger(transport: try connect($0), log: log) }
        var hello = hello
        hello.rank = welcome.rank
        hello.rankTicket = welcome.rankTicket
        for messenger in messengers {
            messenger.limits = .sharded(layout: layout)
            try messenger.send(.hello(hello))
        }
    }

    deinit { messengers.forEach { $0.transport.close() } }

    var transports: [AnyObject] { messengers.map { $0.transport } }

    func range(_ k: Int) -> Range<Int> { bounds[k]..<bounds[k + 1] }

    /// The next message from any shard (with its index) or the coordinator (nil index),
    /// waiting up to `timeout` on all of them at once.
    func receive(timeout: Double, control: ClientMessenger) throws -> (shard: Int?, DecodedMessage)? {
        for attempt in 0..<2 {
            for (k, messenger) in messengers.enumerated() {
                if let message = try messenger.receive(timeout: 0) { return (k, message) }
            }
            if let message = try control.receive(timeout: 0) { return (nil, message) }
            if attempt == 0 { try waitForInput([control.transport] + transports, timeout: timeout) }
        }
        return nil
    }

    /// Takes shard k's weights for `step` into `parameters`; true once every shard's arrived
    /// (then `resetState` says whether the step starts an epoch).
    func take(_ weights: DecodedWeights, from k: Int, into parameters: UnsafeMutableBufferPointer<Float>) throws -> (complete: Bool, resetState: Bool) {
        guard weights.offset == UInt64(bounds[k]) else {
            throw ClusterError.protocolViolation("weights from shard \(k) start at element \(weights.offset), its range is \(range(k))")
        }
        do {
            try weights.tensors.copySlab(into: UnsafeMutableBufferPointer(rebasing: parameters[range(k)]))
        } catch {
            throw ClusterError.protocolViolation("weights from shard \(k) for step \(weights.step + 1) do not fit its range: \(error)")
        }
        received.insert(k)
        resetState = resetState || weights.resetState
        guard received.count == messengers.count else { return (false, false) }
        defer { received = []; resetState = false }
        return (true, resetState)
    }

    /// Every node's gradient sum, each range to its shard, in the pieces of
    /// `SlabPartition.pushPieces`: with `early`, only the pieces of the early run (elements
    /// `earlyFrom...`, final while the lower layers' backward goes on), else the rest.
    func push(step: UInt64, nodes: [Range<Int>], earlyFrom e: Int?, early: Bool,
              gradient: (Int) -> UnsafePointer<Float>) throws {
        for (i, node) in nodes.enumerated() {
            for (k, messenger) in messengers.enumerated() {
                let pieces = SlabPartition.pushPieces(of: range(k), earlyFrom: e)
                for (part, piece) in pieces.enumerated() where early == (e.map { piece.lowerBound >= $0 } ?? false) {
                    try messenger.send { buffer in
                        WireCodec.encodeSlabGradientPush(step: step, tokenCount: 0, chunks: node, offset: piece.lowerBound,
                                                         values: UnsafeBufferPointer(start: gradient(i) + piece.lowerBound, count: piece.count),
                                                         part: part, parts: pieces.count, into: &buffer)
                    }
                }
            }
        }
    }
}
