import ArgumentParser
import Cluster
import Foundation

enum Endpoint {
    /// A ZeroMQ endpoint this program can use: `tcp://HOST:PORT` (PORT 1–65535, or `*` for a
    /// bind), `ipc://PATH` or `inproc://NAME`. Anything else is a bad flag (exit 64), found
    /// before a socket exists.
    static func validate(_ endpoint: String, flag: String, bind: Bool) throws {
        func refuse(_ why: String) -> ValidationError {
            ValidationError("\(flag) \(endpoint): \(why) (expected tcp://HOST:PORT or ipc://PATH, e.g. tcp://127.0.0.1:5555)")
        }
        if let rest = endpoint.dropPrefix("ipc://") ?? endpoint.dropPrefix("inproc://") {
            guard !rest.isEmpty, !rest.contains("\0") else { throw refuse("no path") }
            return
        }
        guard let address = endpoint.dropPrefix("tcp://") else { throw refuse("unknown transport") }
        guard let colon = address.lastIndex(of: ":"), colon != address.startIndex else { throw refuse("no host:port") }
        let port = address[address.index(after: colon)...]
        if bind && port == "*" { return }
        guard let number = Int(port), (1...65535).contains(number) else { throw refuse("port must be 1–65535") }
    }

    /// A bind address libzmq accepts: it binds interfaces and addresses, not host names, so
    /// `localhost` (which this program calls loopback) becomes 127.0.0.1.
    static func bindable(_ endpoint: String) -> String {
        endpoint.hasPrefix("tcp://localhost:") ? "tcp://127.0.0.1:" + endpoint.dropFirst("tcp://localhost:".count) : endpoint
    }

    /// ipc/inproc and tcp on loopback addresses stay on this machine.
    static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst(6))
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
