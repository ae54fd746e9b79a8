import TestSupport
import XCTest
@testable import Cluster
import CZeroMQ

/// The ZeroMQ wrapper over loopback and inproc only; every wait is bounded (≤ 2 s).
final class TransportTests: XCTestCase {
    var context: ZMQContext!

    override func setUpWithError() throws {
        context = try ZMQContext()
    }

    override func tearDown() {
        context = nil
    }

    /// A ROUTER on a free loopback port and a DEALER connected to it with `identity`.
    func makePair(identity: String = "worker-1") throws -> (router: ZMQSocket, dealer: ZMQSocket, endpoint: String) {
        let router = try ZMQSocket(context: context, kind: .router)
        router.receiveTimeout = .seconds(2)
        router.sendTimeout = .seconds(2)
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        let dealer = try ZMQSocket(context: context, kind: .dealer)
        dealer.receiveTimeout = .seconds(2)
        dealer.sendTimeout = .seconds(2)
        try dealer.setIdentity(identity)
        try dealer.connect(endpoint)
        return (router, dealer, endpoint)
    }

    func testBindReportsTheActualPort() throws {
        let router = try ZMQSocket(context: context, kind: .router)
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"), endpoint)
        let port = Int(endpoint.split(separator: ":").last!)!
        XCTAssertGreaterThan(port, 0)
    }

    func testRouterDealerRoundTripWithIdentities() throws {
        let (router, dealer, _) = try makePair(identity: "worker-1")
        let dealer2 = try ZMQSocket(context: context, kind: .dealer)
        try dealer2.setIdentity("worker-2")
        try dealer2.connect(router.lastEndpoint())
        dealer2.receiveTimeout = .seconds(2)

        try dealer.send(frames: [Array("hello from 1".utf8)])
        try dealer2.send(frames: [Array("hello from 2".utf8)])
        var seen: [String: String] = [:]
        for _ in 0..<2 {
            let frames = try router.receive(timeout: .seconds(2))
            XCTAssertEqual(frames.count, 2, "a ROUTER sees [identity, body] with no delimiter frame")
            seen[String(decoding: frames[0], as: UTF8.self)] = String(decoding: frames[1], as: UTF8.self)
        }
        XCTAssertEqual(seen, ["worker-1": "hello from 1", "worker-2": "hello from 2"])

        try router.send(to: Array("worker-2".utf8), body: Array("reply 2".utf8))
        try router.send(to: Array("worker-1".utf8), body: Array("reply 1".utf8))
        XCTAssertEqual(try dealer.receive(timeout: .seconds(2)), [Array("reply 1".utf8)])
        XCTAssertEqual(try dealer2.receive(timeout: .seconds(2)), [Array("reply 2".utf8)])
    }

    func testMultipartFramesArriveInOrderAndWhole() throws {
        let (router, dealer, _) = try makePair()
        try dealer.send(frames: [[1], [], [2, 3], [4, 5, 6]])
        let frames = try router.receive(timeout: .seconds(2))
        XCTAssertEqual(frames, [Array("worker-1".utf8), [1], [], [2, 3], [4, 5, 6]])
    }

    func testSendToUnknownIdentityThrowsHostUnreachable() throws {
        let (router, _, _) = try makePair()
        XCTAssertThrowsError(try router.send(to: Array("nobody".utf8), body: [1, 2, 3])) { error in
            XCTAssertEqual(error as? ZMQError, .hostUnreachable(peer: Array("nobody".utf8)))
            XCTAssertTrue("\(error)".contains("'nobody'"), "\(error)")
        }
    }

    func testReceiveTimesOutAfterItsTimeout() throws {
        let (router, _, _) = try makePair()
        XCTAssertThrowsError(try router.receive(timeout: .milliseconds(100))) { error in
            XCTAssertEqual(error as? ZMQError, .timeout(operation: "receive", seconds: 0.1))
            XCTAssertEqual("\(error)", "receive timed out after 0.1 s")
        }
    }

    func testBindingAPortInUseNamesTheEndpoint() throws {
        let first = try ZMQSocket(context: context, kind: .router)
        let endpoint = try first.bind("tcp://127.0.0.1:*")
        let second = try ZMQSocket(context: context, kind: .router)
        XCTAssertThrowsError(try second.bind(endpoint)) { error in
            XCTAssertEqual(error as? ZMQError, .addressInUse(endpoint: endpoint))
            XCTAssertEqual("\(error)", "cannot bind \(endpoint): address already in use")
        }
    }

    func testBadEndpointsThrowInvalidEndpoint() throws {
        let socket = try ZMQSocket(context: context, kind: .dealer)
        for endpoint in ["not an endpoint", "bogus://127.0.0.1:5555", "tcp://127.0.0.1:notaport"] {
            XCTAssertThrowsError(try socket.connect(endpoint), endpoint) { error in
                guard case let .invalidEndpoint(named, _)? = error as? ZMQError else {
                    return XCTFail("\(endpoint): \(error)")
                }
                XCTAssertEqual(named, endpoint)
            }
        }
        XCTAssertThrowsError(try socket.bind("tcp://127.0.0.1")) { error in
            guard case .invalidEndpoint? = error as? ZMQError else { return XCTFail("\(error)") }
        }
    }

    func testClosedSocketThrowsClosed() throws {
        let socket = try ZMQSocket(context: context, kind: .dealer)
        socket.close()
        socket.close()
        XCTAssertThrowsError(try socket.connect("tcp://127.0.0.1:1")) { error in
            XCTAssertEqual(error as? ZMQError, .closed(function: "zmq_connect"))
        }
    }

    func testFourMebibyteMessageRoundTripsByteExact() throws {
        let (router, dealer, _) = try makePair()
        let count = 4 << 20
        var generator = FixtureRandom(seed: 42)
        let payload = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }

        try payload.withUnsafeBytes { try dealer.send($0) }
        var frames: [ZMQMessage] = []
        try router.receive(into: &frames, timeout: .seconds(2))
        XCTAssertEqual(frames.count, 2)
        XCTAssertEqual(frames[0].array, Array("worker-1".utf8))
        XCTAssertEqual(frames[1].count, count)
        XCTAssertTrue(frames[1].bytes.elementsEqual(payload))

        // Back the other way without copying: encode into libzmq's buffer, send it.
        let reply = try ZMQMessage(count: count)
        for i in 0..<count { reply.mutableBytes[i] = payload[count - 1 - i] }
        try router.send(to: Array("worker-1".utf8), message: reply)
        XCTAssertEqual(reply.count, 0, "a sent message is handed to libzmq and left empty")
        var received: [ZMQMessage] = [ZMQMessage(), ZMQMessage(), ZMQMessage()]
        try dealer.receive(into: &received, timeout: .seconds(2))
        XCTAssertEqual(received.count, 1, "surplus reusable frames are dropped")
        XCTAssertTrue(received[0].bytes.elementsEqual(payload.reversed()))
    }

    func testSharedBufferIsSentWithoutCopyAndReleased() throws {
        let (router, dealer, _) = try makePair()
        let buffer = ZMQSharedBuffer(count: 1 << 20)
        for i in 0..<buffer.count { buffer.mutableBytes[i] = UInt8(truncatingIfNeeded: i &* 7) }
        let expected = [UInt8](buffer.bytes)
        try dealer.send(frames: [[0]])  // a ROUTER can address a peer once it has heard from it
        _ = try router.receive(timeout: .seconds(2))

        // Two frames share the buffer (a broadcast), the second only its first 1000 bytes.
        try router.send(to: Array("worker-1".utf8), message: ZMQMessage(sharing: buffer))
        try router.send(to: Array("worker-1".utf8), message: ZMQMessage(sharing: buffer, count: 1000))
        XCTAssertEqual(try dealer.receive(timeout: .seconds(2)), [expected])
        XCTAssertEqual(try dealer.receive(timeout: .seconds(2)), [Array(expected[0..<1000])])
        XCTAssertTrue(buffer.waitUntilReleased(timeout: .seconds(2)))
        XCTAssertEqual(buffer.framesInFlight, 0)
    }

    func testSharedBufferOutlivesTheCallersReferenceUntilLibzmqReleasesIt() throws {
        // Over inproc libzmq hands the very frame to the receiver, so the buffer must stay
        // alive until the receiver is done with it, whatever the sender does meanwhile.
        let sender = try ZMQSocket(context: context, kind: .pair)
        try sender.bind("inproc://shared")
        let receiver = try ZMQSocket(context: context, kind: .pair)
        try receiver.connect("inproc://shared")
        weak var watched: ZMQSharedBuffer?
        do {
            let buffer = ZMQSharedBuffer(count: 64)
            for i in 0..<64 { buffer.mutableBytes[i] = UInt8(i) }
            watched = buffer
            try sender.send(ZMQMessage(sharing: buffer))
            XCTAssertEqual(buffer.framesInFlight, 1)
            XCTAssertFalse(buffer.waitUntilReleased(timeout: .milliseconds(10)))
        }
        XCTAssertNotNil(watched, "libzmq's frame keeps the buffer alive")
        var frames: [ZMQMessage] = []
        try receiver.receive(into: &frames, timeout: .seconds(2))
        XCTAssertEqual(frames[0].array, (0..<64).map { UInt8($0) })
        XCTAssertEqual(frames[0].bytes.baseAddress, watched.map { UnsafeRawPointer($0.base) },
                       "received in place, not copied")
        XCTAssertNotNil(watched)
        frames.removeAll()  // closing the received frame runs libzmq's free callback
        XCTAssertNil(watched)
    }

    func testOptionsReachLibzmq() throws {
        let router = try ZMQSocket(context: context, kind: .router)
        XCTAssertEqual(try router.option(ZMQ_LINGER, "ZMQ_LINGER"), 0, "linger defaults to 0 here")
        try router.setLinger(.milliseconds(250))
        XCTAssertEqual(try router.option(ZMQ_LINGER, "ZMQ_LINGER"), 250)
        try router.setMaximumMessageSize(1 << 33)
        XCTAssertEqual(try router.option64(ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE"), 1 << 33)
        try router.setMaximumMessageSize(nil)
        XCTAssertEqual(try router.option64(ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE"), -1)
        try router.setHeartbeat(interval: .seconds(1), timeout: .seconds(3), timeToLive: .seconds(5))
        XCTAssertEqual(try router.option(ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL"), 1000)
        XCTAssertEqual(try router.option(ZMQ_HEARTBEAT_TIMEOUT, "ZMQ_HEARTBEAT_TIMEOUT"), 3000)
        XCTAssertEqual(try router.option(ZMQ_HEARTBEAT_TTL, "ZMQ_HEARTBEAT_TTL"), 5000)
        try router.setHighWaterMarks(send: 10, receive: 20)
        XCTAssertEqual(try router.option(ZMQ_SNDHWM, "ZMQ_SNDHWM"), 10)
        XCTAssertEqual(try router.option(ZMQ_RCVHWM, "ZMQ_RCVHWM"), 20)
        try router.setRouterHandover(true)

        router.receiveTimeout = .milliseconds(50)
        XCTAssertThrowsError(try router.receive(timeout: .zero))
        XCTAssertEqual(try router.option(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO"), 0, "a per-call timeout is applied")
        XCTAssertThrowsError(try router.receive()) { error in
            XCTAssertEqual(error as? ZMQError, .timeout(operation: "receive", seconds: 0.05))
        }
        XCTAssertEqual(try router.option(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO"), 50, "then the socket's default")
    }

    func testRestartedWorkerWithTheSameIdentityIsReachableWithHandover() throws {
        let router = try ZMQSocket(context: context, kind: .router)
        try router.setRouterHandover(true)
        let endpoint = try router.bind("tcp://127.0.0.1:*")
        let old = try ZMQSocket(context: context, kind: .dealer)
        try old.setIdentity("worker-1")
        try old.connect(endpoint)
        try old.send(frames: [Array("old".utf8)])
        XCTAssertEqual(try router.receive(timeout: .seconds(2))[1], Array("old".utf8))

        let new = try ZMQSocket(context: context, kind: .dealer)
        try new.setIdentity("worker-1")
        try new.connect(endpoint)
        try new.send(frames: [Array("new".utf8)])
        XCTAssertEqual(try router.receive(timeout: .seconds(2))[1], Array("new".utf8))
        try router.send(to: Array("worker-1".utf8), body: Array("to the new one".utf8))
        XCTAssertEqual(try new.receive(timeout: .seconds(2)), [Array("to the new one".utf8)])
    }

    func testMaximumMessageSizeDropsOversizedMessagesAndKeepsServing() throws {
        let router = try ZMQSocket(context: context, kind: .router)
        try router.setMaximumMessageSize(1024)
        let endpoint = try router.bind("tcp://127.0.0.1:*")

        let big = try ZMQSocket(context: context, kind: .dealer)
        try big.setIdentity("big")
        try big.connect(endpoint)
        try big.send(frames: [[UInt8](repeating: 7, count: 4096)])
        XCTAssertThrowsError(try router.receive(timeout: .milliseconds(300))) { error in
            XCTAssertEqual(error as? ZMQError, .timeout(operation: "receive", seconds: 0.3))
        }

        let small = try ZMQSocket(context: context, kind: .dealer)
        try small.setIdentity("small")
        try small.connect(endpoint)
        try small.send(frames: [[UInt8](repeating: 1, count: 1024)])
        let frames = try router.receive(timeout: .seconds(2))
        XCTAssertEqual(frames, [Array("small".utf8), [UInt8](repeating: 1, count: 1024)])
    }

    func testTooManyFramesAreDrainedAndReported() throws {
        let (router, dealer, _) = try makePair()
        try dealer.send(frames: (0..<5).map { [UInt8($0)] })
        try dealer.send(frames: [[9]])
        XCTAssertThrowsError(try router.receive(timeout: .seconds(2), frameLimit: 3)) { error in
            XCTAssertEqual(error as? ZMQError, .tooManyFrames(count: 6, limit: 3))
        }
        // The socket is positioned at the next message.
        XCTAssertEqual(try router.receive(timeout: .seconds(2), frameLimit: 3), [Array("worker-1".utf8), [9]])

        try dealer.send(frames: (0..<5).map { [UInt8($0)] })
        try dealer.send(frames: [[8]])
        var frames: [ZMQMessage] = []
        XCTAssertThrowsError(try router.receive(into: &frames, timeout: .seconds(2), frameLimit: 2)) { error in
            XCTAssertEqual(error as? ZMQError, .tooManyFrames(count: 6, limit: 2))
        }
        try router.receive(into: &frames, timeout: .seconds(2), frameLimit: 2)
        XCTAssertEqual(frames.map(\.array), [Array("worker-1".utf8), [8]])
    }

    func testPollWaitsForTheSocketThatHasAMessage() throws {
        let (router, dealer, _) = try makePair()
        let quiet = try ZMQSocket(context: context, kind: .pair)
        try quiet.bind("inproc://quiet")

        XCTAssertEqual(try ZMQSocket.poll(sockets: [router, quiet], timeout: .milliseconds(50)), [[], []])
        try dealer.send(frames: [[1]])
        XCTAssertEqual(try ZMQSocket.poll(sockets: [router, quiet], timeout: .seconds(2)), [.readable, []])
        XCTAssertTrue(try router.waitUntilReadable(timeout: .zero))
        _ = try router.receive(timeout: .zero)
        XCTAssertFalse(try router.waitUntilReadable(timeout: .zero))
        XCTAssertEqual(try ZMQSocket.poll(sockets: [dealer], for: .writable, timeout: .seconds(2)), [.writable])
    }

    func testDurationsBecomeMillisecondsRoundedUp() {
        XCTAssertEqual(Duration.zero.zmqMilliseconds, 0)
        XCTAssertEqual(Duration.microseconds(1).zmqMilliseconds, 1)
        XCTAssertEqual(Duration.milliseconds(100).zmqMilliseconds, 100)
        XCTAssertEqual(Duration.seconds(30).zmqMilliseconds, 30_000)
        XCTAssertEqual(Duration.seconds(Int64.max / 2).zmqMilliseconds, Int32.max)
    }

    func testErrorDescriptions() {
        XCTAssertEqual(ZMQError.describe(identity: [0, 0x6b, 0x8b, 0x45, 0x67]), "0x006b8b4567")
        XCTAssertEqual(ZMQError.hostUnreachable(peer: [0, 1]).description,
                       "cannot send to peer 0x0001: no connected peer has that identity "
                       + "(it never connected or has disconnected)")
        XCTAssertEqual(ZMQError.timeout(operation: "send to 'w'", seconds: 30).description,
                       "send to 'w' timed out after 30 s")
        XCTAssertEqual(ZMQError.system(function: "zmq_bind", errno: 13, message: "Permission denied").description,
                       "zmq_bind failed: Permission denied (errno 13)")
    }
}

