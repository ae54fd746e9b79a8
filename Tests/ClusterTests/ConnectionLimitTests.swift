import CZeroMQ
import Foundation
import XCTest
@testable import Cluster
import Training

/// Issue 21 item 8, in parts: the connection table's rule (pure), the monitor's frames, the
/// coordinator's cap from the run, and a real ROUTER that admits at most its cap of NULL
/// clients, a CURVE allow-list still in force, and a refused peer that gets in once a place
/// frees (libzmq reconnects it by itself).
final class ConnectionLimitTests: XCTestCase {
    func testTheTableAdmitsWhileItsOpenConnectionsAreAtMostTheCapAndFreesAPlaceOnDisconnect() {
        var table = ConnectionTable(cap: 2)
        table.accepted(7)
        XCTAssertTrue(table.admit())
        table.accepted(8)
        XCTAssertTrue(table.admit())
        table.accepted(9)
        XCTAssertFalse(table.admit(), "a third open connection is past a cap of 2")
        XCTAssertEqual(table.refused, 1)
        table.disconnected(9)   // the refused one closes...
        table.disconnected(7)   // ...and an admitted one
        table.accepted(9)       // the descriptor again, a new connection
        XCTAssertTrue(table.admit())
        XCTAssertEqual(table.openCount, 2)
        table.disconnected(42)  // never accepted (opened before monitoring): no change
        XCTAssertEqual(table.openCount, 2)
        table.cap = 1
        table.accepted(10)
        XCTAssertFalse(table.admit())
        XCTAssertEqual(table.refused, 2)
    }

    func testMonitorEventsAreReadFromVersion1Frames() {
        var bytes = [UInt8](repeating: 0, count: 6)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt16(ZMQ_EVENT_ACCEPTED), toByteOffset: 0, as: UInt16.self)
            $0.storeBytes(of: UInt32(23), toByteOffset: 2, as: UInt32.self)
        }
        XCTAssertEqual(MonitorEvent(frame: bytes), MonitorEvent(event: UInt16(ZMQ_EVENT_ACCEPTED), value: 23))
        XCTAssertNil(MonitorEvent(frame: [1, 2, 3]))
    }

    func testTheCoordinatorsCapIsItsWorkersOrOnePerChunkWhenElasticPlusStrangers() throws {
        let plan = try RunPlan(config: ClusterFixtures.tinyConfig(), corpus: ClusterFixtures.corpus)
        XCTAssertEqual(plan.chunkCount, 4)
        XCTAssertEqual(Coordinator.maxConnections(plan, workers: 2, elastic: false), 2 + ConnectionLimit.strangers)
        XCTAssertEqual(Coordinator.maxConnections(plan, workers: 2, elastic: true), 4 + ConnectionLimit.strangers)
        XCTAssertEqual(ConnectionLimit.bufferedBytes(connections: 6, receiveQueue: 4, maxMessageBytes: 1000), 30_000)
    }

    // MARK: A real ROUTER

    private func server(cap: Int, curve: CurveServerSettings? = nil) throws -> ZMQServerTransport {
        var settings = ZMQServerSettings(bind: "tcp://127.0.0.1:*", maxMessageBytes: 1 << 16)
        settings.maxConnections = cap
        settings.handshakeTimeout = 0.5   // a refused peer tries again this soon
        settings.curve = curve
        return try ZMQServerTransport(settings)
    }

    private func client(_ endpoint: String, _ name: String, context: ZMQContext,
                        curve: (server: String, keys: (publicKey: String, secretKey: String))? = nil) throws -> ZMQSocket {
        let socket = try ZMQSocket(context: context, kind: .dealer)
        try socket.setIdentity(name)
        if let curve {
            try socket.setCurveClient(serverPublicKey: curve.server, publicKey: curve.keys.publicKey, secretKey: curve.keys.secretKey)
        }
        try socket.connect(endpoint)
        try socket.send(frames: [Array(name.utf8)])   // queued until the handshake succeeds
        return socket
    }

    /// The senders of the messages that arrive within `seconds`.
    private func senders(_ server: ZMQServerTransport, seconds: Double) throws -> Set<String> {
        var names = Set<String>()
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if case .message(_, let body)? = try server.receive(timeout: 0.1) {
                names.insert(String(decoding: body, as: UTF8.self))
            }
        }
        return names
    }

    func testItem8_ARouterAdmitsAtMostItsCapOfConnectionsAndARefusedPeerGetsInOnceAPlaceFrees() throws {
        let server = try server(cap: 2)
        let context = try ZMQContext()
        let first = try client(server.endpoint, "first", context: context)
        let second = try client(server.endpoint, "second", context: context)
        XCTAssertEqual(try senders(server, seconds: 1.5), ["first", "second"])
        let third = try client(server.endpoint, "third", context: context)
        XCTAssertEqual(try senders(server, seconds: 2), [], "a third connection is past the cap")
        XCTAssertGreaterThan(try XCTUnwrap(server.connections).refused, 0)
        first.close()
        XCTAssertEqual(try senders(server, seconds: 5), ["third"], "once a place is free the refused peer is admitted")
        _ = (second, third)
        server.close()
    }

    func testItem8_WithCurveTheAllowListStillRefusesStrangersAndTheCapLimitsListedClients() throws {
        let serverKeys = try CurveKeys.generate(), a = try CurveKeys.generate(), b = try CurveKeys.generate()
        let outsider = try CurveKeys.generate()
        let server = try server(cap: 1, curve: CurveServerSettings(secretKey: serverKeys.secretKey,
                                                                    allowedPublicKeys: [a.publicKey, b.publicKey]))
        let context = try ZMQContext()
        let first = try client(server.endpoint, "a", context: context, curve: (serverKeys.publicKey, a))
        XCTAssertEqual(try senders(server, seconds: 1.5), ["a"])
        let stranger = try client(server.endpoint, "stranger", context: context, curve: (serverKeys.publicKey, outsider))
        let second = try client(server.endpoint, "b", context: context, curve: (serverKeys.publicKey, b))
        XCTAssertEqual(try senders(server, seconds: 2), [], "b is past the cap, the stranger not in the list")
        first.close()
        XCTAssertEqual(try senders(server, seconds: 5), ["b"], "b gets a's place, the stranger never")
        _ = (stranger, second)
        server.close()
    }
}
