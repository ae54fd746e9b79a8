import Foundation

/// How many connections a server socket holds at once, and what that bounds.
///
/// libzmq queues up to ZMQ_RCVHWM messages per connection, each up to ZMQ_MAXMSGSIZE, and
/// holds one more in its decoder when that queue is full; nothing bounds the number of
/// connections. So a ROUTER's buffered bytes are at most
///
///     connections × (receiveQueue + 1) × maxMessageBytes
///
/// and only a cap on the connections makes that a total. The cap is kept by the ZAP handler
/// (`ZAPAuthenticator`), which libzmq asks during every handshake, NULL mechanism included,
/// once the socket has a ZAP domain: it counts the socket's live connections from a socket
/// monitor (ACCEPTED +1, DISCONNECTED −1, by file descriptor) and refuses a handshake while
/// more than `connections` are open. Honest peers are the run's members; the rest of the cap
/// (`strangers`) lets a few others in at once to hear why they are refused (a wrong token, a
/// late hello) and covers a dead member's connection that libzmq has not closed yet.
public enum ConnectionLimit {
    /// Connections beyond the run's members.
    public static let strangers = 4

    /// The cap for a server whose members are `members` peers (workers, plus the coordinator
    /// at a shard).
    public static func connections(members: Int) -> Int { max(members, 1) + strangers }

    /// The bytes libzmq may buffer at once for a server with this cap, queue and message limit
    /// (the formula above; DESIGN.md, "Memory under load").
    public static func bufferedBytes(connections: Int, receiveQueue: Int, maxMessageBytes: Int) -> Int {
        connections * (receiveQueue + 1) * maxMessageBytes
    }
}

/// The live connections of one server socket and the admission rule (pure: no sockets, so
/// unit-testable; `ZAPAuthenticator` feeds it monitor events and asks it at each handshake).
///
/// A connection counts from ACCEPTED to DISCONNECTED, handshaking or admitted: libzmq's
/// monitor tells neither the descriptor of a handshake that succeeded nor that of a ZAP
/// request, so "admitted" cannot be told apart, and counting every open connection is the
/// bound that is never too low. Events are keyed by descriptor, counted (a descriptor is
/// reused only after its DISCONNECTED is sent, but a count never goes wrong on order).
struct ConnectionTable {
    /// At most this many open connections may pass a handshake.
    var cap: Int
    private var open: [Int32: Int] = [:]
    private(set) var openCount = 0
    /// Handshakes refused for the cap since start.
    private(set) var refused = 0

    init(cap: Int) {
        precondition(cap >= 1)
        self.cap = cap
    }

    mutating func accepted(_ descriptor: Int32) {
        open[descriptor, default: 0] += 1
        openCount += 1
    }

    /// A DISCONNECTED for a descriptor never seen accepted (opened before monitoring began)
    /// changes nothing, so the count cannot go below the truth.
    mutating func disconnected(_ descriptor: Int32) {
        guard let count = open[descriptor] else { return }
        if count == 1 { open[descriptor] = nil } else { open[descriptor] = count - 1 }
        openCount -= 1
    }

    /// Asked during the handshake of one of the open connections (counted already): true if
    /// it may be admitted. Admitting only while the open connections, this one included, are
    /// at most `cap` keeps the admitted ones at most `cap` at every moment.
    mutating func admit() -> Bool {
        if openCount <= cap { return true }
        refused += 1
        return false
    }
}

/// One libzmq monitor event (version 1): a frame of uint16 event + uint32 value in host
/// order, then a frame with the endpoint.
struct MonitorEvent: Equatable {
    var event: UInt16
    var value: UInt32

    /// nil for a frame that is not a version-1 event.
    init?(frame: [UInt8]) {
        guard frame.count == 6 else { return nil }
        event = frame.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
        value = frame.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt32.self) }
    }

    init(event: UInt16, value: UInt32) {
        self.event = event
        self.value = value
    }
}
