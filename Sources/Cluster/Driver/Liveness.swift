/// When each peer was last heard from: the one silence check of every role. Any message
/// counts, heartbeats included.
struct Liveness {
    private var lastHeard: [PeerIdentity: Double] = [:]

    mutating func heard(_ peer: PeerIdentity, at now: Double) { lastHeard[peer] = now }

    /// Seconds since `peer` was last heard, counted from `since` when it never was.
    func silence(of peer: PeerIdentity, now: Double, since start: Double) -> Double {
        now - (lastHeard[peer] ?? start)
    }

    /// The first of `watched` silent for longer than its limit, with its silence.
    func firstSilent(_ watched: [(peer: PeerIdentity, limit: Double)], now: Double, since start: Double) -> (PeerIdentity, Double)? {
        for (peer, limit) in watched {
            let seconds = silence(of: peer, now: now, since: start)
            if seconds > limit { return (peer, seconds) }
        }
        return nil
    }
}
