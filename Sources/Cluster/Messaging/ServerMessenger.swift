import Foundation
import Recurrent
import Training
import Wire

/// The coordinator's message layer over a `ServerTransport`: decodes what arrives with the
/// run's limits, drops and logs (at a bounded rate) whatever is malformed, answers a peer
/// of another protocol version with an Error, and encodes what leaves.
final class ServerMessenger {
    let transport: ServerTransport
    var limits: DecodeLimits
    let rejections: RejectionLog
    /// How log lines name a peer (its worker name once it joined).
    var describe: (PeerIdentity) -> String = ServerMessenger.anonymous

    /// A peer that is not a worker: "peer " and its identity in hex.
    static func anonymous(_ identity: PeerIdentity) -> String {
        "peer " + identity.map { String(format: "%02x", $0) }.joined()
    }
    private var outgoing = MessageBuffer()

    init(transport: ServerTransport, limits: DecodeLimits, log: @escaping (String) -> Void) {
        self.transport = transport
        self.limits = limits
        rejections = RejectionLog(log: log)
    }

    /// The next valid message, or nil once `timeout` seconds have passed. However many
    /// malformed messages arrive meanwhile, it returns by the deadline.
    func receive(timeout: Double) throws -> (PeerIdentity, DecodedMessage)? {
        let deadline = monotonicSeconds() + timeout
        while true {
            let remaining = max(0, deadline - monotonicSeconds())
            guard let received = try transport.receive(timeout: remaining) else { return nil }
            switch received {
            case .malformed(let from, let reason):
                rejections.reject(from: from.map(describe) ?? "?", reason)
            case .message(let from, let body):
                do {
                    return (from, try WireCodec.decode(body, limits: limits))
                } catch {
                    rejections.reject(from: describe(from), "\(error)")
                    if case WireError.versionMismatch = error {
                        reply(.error(WireErrorMessage(message: "\(error)")), to: from)
                    }
                }
            }
            if monotonicSeconds() >= deadline { return nil }
        }
    }

    func reject(from peer: PeerIdentity, _ reason: String) { rejections.reject(from: describe(peer), reason) }

    /// Replies that could not be sent at once (the peer's queue was full) and were dropped.
    private(set) var droppedReplies = 0

    /// An answer to a peer that is not (or not yet) a member: a refusal, a version mismatch,
    /// "hello first". Sent only if the peer's queue has room at once, never waited for, so a
    /// peer that never reads cannot stall the server; a reply that does not fit is dropped
    /// and counted.
    func reply(_ message: Message, to peer: PeerIdentity) {
        do {
            try send(message, to: peer, waiting: false)
        } catch {
            droppedReplies += 1
        }
    }

    func send(_ message: Message, to peer: PeerIdentity, waiting: Bool = true) throws {
        WireCodec.encode(message, into: &outgoing)
        try outgoing.withUnsafeBytes { try transport.send($0, to: peer, waiting: waiting) }
    }

    /// The weights for `step`, encoded once from the slab and sent to every peer.
    func broadcastWeights(step: Int, resetState: Bool, parameters: UnsafePointer<Float>, layout: ParameterLayout,
                          to peers: [PeerIdentity]) throws {
        WireCodec.encodeWeights(step: UInt64(step), resetState: resetState,
                                parameters: UnsafeBufferPointer(start: parameters, count: layout.count),
                                layout: layout, into: &outgoing)
        try outgoing.withUnsafeBytes { try transport.broadcast($0, to: peers) }
    }

    /// A parameter shard's weights for `step`: its range, encoded once and sent to every peer.
    func broadcastSlab(step: UInt64, resetState: Bool, offset: Int, values: UnsafeBufferPointer<Float>,
                       to peers: [PeerIdentity]) throws {
        WireCodec.encodeSlabWeights(step: step, resetState: resetState, offset: offset, values: values, into: &outgoing)
        try outgoing.withUnsafeBytes { try transport.broadcast($0, to: peers) }
    }
}

extension DecodeLimits {
    /// What a message of `plan`'s run may hold at most: one copy of the parameter table plus
    /// the carried state of every stream (h and c), for pushes and welcomes alike.
    init(plan: RunPlan) {
        self.init(layout: plan.layout, extraValues: 2 * plan.model.layerCount * plan.config.streams * plan.model.hiddenSize)
    }
}

/// A worker's message layer over a `ClientTransport`.
final class ClientMessenger {
    let transport: ClientTransport
    /// Replaced by the run's limits once the worker knows the model.
    var limits = DecodeLimits.standard
    private let log: (String) -> Void
    private var outgoing = MessageBuffer()

    init(transport: ClientTransport, log: @escaping (String) -> Void) {
        self.transport = transport
        self.log = log
    }

    /// The next valid message from the coordinator, or nil once `timeout` has passed.
    func receive(timeout: Double) throws -> DecodedMessage? {
        let deadline = monotonicSeconds() + timeout
        while true {
            guard let received = try transport.receive(timeout: max(0, deadline - monotonicSeconds())) else { return nil }
            switch received {
            case .malformed(_, let reason):
                log("rejected message from the coordinator: \(reason)")
            case .message(_, let body):
                do {
                    return try WireCodec.decode(body, limits: limits)
                } catch {
                    log("rejected message from the coordinator: \(error)")
                }
            }
            if monotonicSeconds() >= deadline { return nil }
        }
    }

    func send(_ message: Message) throws {
        WireCodec.encode(message, into: &outgoing)
        try sendEncoded()
    }

    /// Sends what `encode` wrote into the reusable buffer (gradient pushes).
    func send(encoding encode: (inout MessageBuffer) -> Void) throws {
        encode(&outgoing)
        try sendEncoded()
    }

    private func sendEncoded() throws {
        try outgoing.withUnsafeBytes { try transport.send($0) }
    }
}
