import Dispatch

/// Seconds on the monotonic clock (never steps back with the wall clock): every timeout,
/// heartbeat and liveness check of the roles is measured with it.
@inline(__always)
func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
