import Training
import Wire

/// What a server-side role (a parameter shard; `ShardMachine`) hands its `ServerDriver`: a
/// role decides, the driver does. A role never touches a socket, a clock or a thread.
enum ServerEvent {
    /// A valid message from a peer (malformed ones are logged by the driver and never reach
    /// the role).
    case received(PeerIdentity, DecodedMessage)
    /// A `.broadcast` found this peer gone or not reading; the others got their copy.
    case peerGone(PeerIdentity)
    /// A peer of `ServerRole.watched` has said nothing for `seconds`.
    case silent(PeerIdentity, seconds: Double)
    /// A signal asked the process to stop (delivered once).
    case stopRequested(StopRequest.Stopped)
    /// Time passed (the driver's wait for input came back): timers are checked against `now`.
    case tick
}

enum ServerAction {
    /// To a member of the run: waits up to the send timeout for room; a failure ends the role
    /// with the transport's error, unless `required` is false (then it is dropped).
    case send(Message, to: PeerIdentity, required: Bool = true)
    /// To a peer that is not (or not yet) a member: a refusal, "hello first". Never blocks, so
    /// a peer that never reads cannot stall the server; dropped and counted when it does not fit.
    case reply(Message, to: PeerIdentity)
    /// Logged at a bounded rate (`RejectionLog`).
    case reject(PeerIdentity, String)
    /// A shard's weights for `step` (its range of the slab), encoded once for every peer.
    /// `values` stays valid until the role's next event. A peer that is gone comes back as
    /// `.peerGone`.
    case broadcastSlab(step: UInt64, resetState: Bool, offset: Int, values: UnsafeBufferPointer<Float>, to: [PeerIdentity])
    /// The bound every message from now on must keep (the run's model is known).
    case limit(DecodeLimits)
    /// The run's members from now on (workers, and the coordinator at a shard): the
    /// transport's connection cap follows (`ServerTransport.admit(members:)`).
    case members(Int)
    case log(String)
    /// The run is over: the driver returns.
    case finish
    /// The role cannot go on: the driver throws `error`.
    case fail(Error)
}

/// A server-side role as its driver runs it.
protocol ServerRole {
    mutating func handle(_ event: ServerEvent, now: Double) -> [ServerAction]
    /// Whom the role says "alive" to every heartbeat interval, and what it says.
    var heartbeat: (to: PeerIdentity, Heartbeat)? { get }
    /// Peers whose silence the role must hear of, and after how many seconds.
    var watched: [(peer: PeerIdentity, limit: Double)] { get }
    /// How log lines name a peer ("the coordinator", "worker 1"); nil: by its identity.
    func name(of peer: PeerIdentity) -> String?
}
