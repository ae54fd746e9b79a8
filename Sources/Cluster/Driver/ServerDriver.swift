import Training
import Wire

/// Runs a server-side role (`ServerRole`) over one transport: owns the socket (through
/// `ServerMessenger`), the clock, the heartbeats and the silence checks, and carries out the
/// role's actions. One loop:
///
///     stop requested? → tick → heartbeat if due → silent peers → wait up to 0.2 s for a
///     message → the role's actions for each event
///
/// A role's decision never waits on a peer: sends to members wait at most the transport's send
/// timeout, replies to strangers never.
final class ServerDriver<Role: ServerRole> {
    private(set) var role: Role
    let messenger: ServerMessenger
    let stop: StopRequest
    private var liveness = Liveness()
    private var heartbeats: HeartbeatSchedule
    private let clock: () -> Double
    private let log: (String) -> Void
    private var stopDelivered = false

    init(role: Role, messenger: ServerMessenger, stop: StopRequest, heartbeatTimeout: Double,
         clock: @escaping () -> Double = monotonicSeconds, log: @escaping (String) -> Void) {
        self.role = role
        self.messenger = messenger
        self.stop = stop
        self.clock = clock
        self.log = log
        heartbeats = HeartbeatSchedule(timeout: heartbeatTimeout)
    }

    /// Until the role finishes (returns) or fails (throws its error).
    func run() throws {
        let start = clock()
        messenger.describe = { [unowned self] in role.name(of: $0) ?? ServerMessenger.anonymous($0) }
        while true {
            if !stopDelivered, let stopped = stop.pending {
                stopDelivered = true
                if try perform(.stopRequested(stopped)) { return }
            }
            if try perform(.tick) { return }
            sendHeartbeatIfDue()
            if let (peer, seconds) = liveness.firstSilent(role.watched, now: clock(), since: start),
               try perform(.silent(peer, seconds: seconds)) { return }
            guard let (peer, message) = try messenger.receive(timeout: 0.2) else { continue }
            liveness.heard(peer, at: clock())
            if try perform(.received(peer, message)) { return }
        }
    }

    /// Feeds `event` to the role and carries out its actions (and the events they cause);
    /// true when the role finished.
    private func perform(_ event: ServerEvent) throws -> Bool {
        var events = [event]
        while !events.isEmpty {
            for action in role.handle(events.removeFirst(), now: clock()) {
                switch try carryOut(action) {
                case .finished: return true
                case .caused(let next): events += next
                }
            }
        }
        return false
    }

    private enum Outcome { case finished, caused([ServerEvent]) }

    private func carryOut(_ action: ServerAction) throws -> Outcome {
        switch action {
        case .send(let message, let peer, let required):
            do {
                try messenger.send(message, to: peer)
            } catch where !required {}
        case .reply(let message, let peer):
            messenger.reply(message, to: peer)
        case .reject(let peer, let reason):
            messenger.reject(from: peer, reason)
        case .broadcastSlab(let step, let resetState, let offset, let values, let peers):
            return .caused(try broadcast(step: step, resetState: resetState, offset: offset, values: values, to: peers))
        case .limit(let limits):
            messenger.limits = limits
        case .members(let count):
            messenger.transport.admit(members: count)
        case .log(let line):
            log(line)
        case .finish:
            return .finished
        case .fail(let error):
            throw error
        }
        return .caused([])
    }

    /// To every peer that is still there; each one gone or not reading is an event.
    private func broadcast(step: UInt64, resetState: Bool, offset: Int, values: UnsafeBufferPointer<Float>,
                           to peers: [PeerIdentity]) throws -> [ServerEvent] {
        var peers = peers[...], gone: [ServerEvent] = []
        while !peers.isEmpty {
            do {
                try messenger.broadcastSlab(step: step, resetState: resetState, offset: offset, values: values, to: Array(peers))
                break
            } catch TransportError.peerGone(let peer), TransportError.sendTimedOut(let peer, _) {
                gone.append(.peerGone(peer))
                guard let index = peers.firstIndex(of: peer) else { break }
                peers = peers[(index + 1)...]   // those before it have their copy
            }
        }
        return gone
    }

    /// Never waits: a full queue is slowness, and silence is judged by the peer.
    private func sendHeartbeatIfDue() {
        guard let (peer, beat) = role.heartbeat, heartbeats.isDue(now: clock()) else { return }
        try? messenger.send(.heartbeat(beat), to: peer, waiting: false)
    }
}
