/// When a role next says it is alive. Every role (coordinator to its workers and shards, worker
/// and shard to the coordinator) beats every `interval` = min(1 s, timeout / 5), so a peer hears
/// at least five beats within its heartbeat timeout and a closed connection is noticed within a
/// second.
struct HeartbeatSchedule {
    static func interval(forTimeout timeout: Double) -> Double { min(1, timeout / 5) }

    let interval: Double
    private var lastSent = -Double.infinity

    init(timeout: Double) { interval = Self.interval(forTimeout: timeout) }

    /// True when a beat is due at `now`, which then counts as the last one sent.
    mutating func isDue(now: Double = monotonicSeconds()) -> Bool {
        guard now - lastSent >= interval else { return false }
        lastSent = now
        return true
    }
}
