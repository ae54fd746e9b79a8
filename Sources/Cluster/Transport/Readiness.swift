import Foundation

/// A transport over one ZeroMQ socket, so that a role serving several transports (a
/// coordinator with its workers and its parameter shards, a worker with its coordinator and
/// its shards) can wait on all of them together.
protocol Pollable {
    var socket: ZMQSocket { get }
}

/// Waits until one of `transports` may have a message, at most `timeout` seconds; the caller
/// then tries each. The wait is cut into `slice`s: here (libzmq 4.3.4) zmq_poll over several
/// sockets did not return when a message arrived on one of them, and every sharded step
/// waited out the whole timeout (measured: 200 ms a step); a 1 ms slice bounds that delay.
/// Transports without a socket (in memory) just wait one slice.
func waitForInput(_ transports: [AnyObject], timeout: Double, slice: Double = 0.001) throws {
    let wait = min(timeout, slice)
    let sockets = transports.compactMap { ($0 as? Pollable)?.socket }
    guard sockets.count == transports.count, !sockets.isEmpty else {
        if wait > 0 { usleep(UInt32(wait * 1e6)) }
        return
    }
    _ = try ZMQSocket.poll(sockets: sockets, timeout: .microseconds(Int(wait * 1e6)))
}
