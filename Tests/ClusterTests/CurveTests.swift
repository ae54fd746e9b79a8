import XCTest
@testable import Cluster

/// CURVE keys, encrypted round trips and the ZAP allow-list, over loopback only.
final class CurveTests: XCTestCase {
    /// Key pairs published in libzmq's zmq_curve(7) manual page.
    let serverPublic = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    let serverSecret = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
    let clientPublic = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    let clientSecret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"

    var context: ZMQContext!

    override func setUpWithError() throws {
        XCTAssertTrue(ZMQContext.hasCapability("curve"), "libzmq here is built with libsodium")
        context = try ZMQContext()
    }

    override func tearDown() {
        context = nil
    }

    func testPublicKeyFromSecretMatchesThePublishedPairs() throws {
        XCTAssertEqual(try CurveKeys.publicKey(fromSecret: serverSecret), serverPublic)
        XCTAssertEqual(try CurveKeys.publicKey(fromSecret: clientSecret), clientPublic)
    }

    func testGeneratedKeysAreValidFortyCharacterPairs() throws {
        let first = try CurveKeys.generate()
        let second = try CurveKeys.generate()
        for key in [first.publicKey, first.secretKey] {
            XCTAssertEqual(key.count, 40)
            XCTAssertNoThrow(try CurveKeys.validate(key))
            XCTAssertEqual(CurveKeys.encode(try CurveKeys.decode(key)), key)
        }
        XCTAssertEqual(try CurveKeys.publicKey(fromSecret: first.secretKey), first.publicKey)
        XCTAssertNotEqual(first.secretKey, second.secretKey)
    }

    func testMalformedKeysAreRejectedWithTheReason() {
        XCTAssertThrowsError(try CurveKeys.validate("short")) { error in
            XCTAssertEqual(error as? ZMQError, .invalidCurveKey(reason: "expected 40 Z85 characters, got 5"))
        }
        let badCharacter = String(serverPublic.prefix(10)) + "\"" + String(serverPublic.dropFirst(11))
        XCTAssertThrowsError(try CurveKeys.decode(badCharacter)) { error in
            XCTAssertEqual(error as? ZMQError, .invalidCurveKey(
                reason: "character '\"' at position 11 is not in the Z85 alphabet"))
        }
        let socket = try? ZMQSocket(context: context, kind: .router)
        XCTAssertThrowsError(try socket?.setCurveServer(secretKey: "x")) { error in
            guard case .invalidCurveKey? = error as? ZMQError else { return XCTFail("\(error)") }
        }
    }

    /// A CURVE ROUTER on a free loopback port.
    func makeServer() throws -> (ZMQSocket, String) {
        let server = try ZMQSocket(context: context, kind: .router)
        server.sendTimeout = .seconds(2)
        try server.setCurveServer(secretKey: serverSecret)
        return (server, try server.bind("tcp://127.0.0.1:*"))
    }

    /// A CURVE DEALER that trusts `serverKey`.
    func makeClient(identity: String, serverKey: String, keys: (publicKey: String, secretKey: String),
                    endpoint: String) throws -> ZMQSocket {
        let client = try ZMQSocket(context: context, kind: .dealer)
        client.sendTimeout = .seconds(2)
        try client.setIdentity(identity)
        try client.setCurveClient(serverPublicKey: serverKey, publicKey: keys.publicKey, secretKey: keys.secretKey)
        try client.connect(endpoint)
        return client
    }

    func testCurveRoundTrip() throws {
        let (server, endpoint) = try makeServer()
        let client = try makeClient(identity: "worker-1", serverKey: serverPublic,
                                    keys: (clientPublic, clientSecret), endpoint: endpoint)
        try client.send(frames: [Array("secret gradient".utf8)])
        XCTAssertEqual(try server.receive(timeout: .seconds(2)),
                       [Array("worker-1".utf8), Array("secret gradient".utf8)])
        try server.send(to: Array("worker-1".utf8), body: Array("secret weights".utf8))
        XCTAssertEqual(try client.receive(timeout: .seconds(2)), [Array("secret weights".utf8)])
    }

    func testClientWithTheWrongServerKeyGetsNothingThrough() throws {
        let (server, endpoint) = try makeServer()
        let impostorServer = try CurveKeys.generate().publicKey
        let client = try makeClient(identity: "worker-1", serverKey: impostorServer,
                                    keys: (clientPublic, clientSecret), endpoint: endpoint)
        try client.send(frames: [[1, 2, 3]])
        XCTAssertThrowsError(try server.receive(timeout: .milliseconds(300))) { error in
            XCTAssertEqual(error as? ZMQError, .timeout(operation: "receive", seconds: 0.3))
        }
    }

    func testAuthenticatorAdmitsListedKeysAndReportsOthers() throws {
        let rejections = RejectionLog()
        let rejected = expectation(description: "the unlisted client is reported")
        rejected.assertForOverFulfill = false
        let authenticator = try ZAPAuthenticator(context: context, allowedPublicKeys: [clientPublic], onRejection: {
            rejections.append($0)
            rejected.fulfill()
        })
        defer { authenticator.stop() }
        let (server, endpoint) = try makeServer()

        let outsider = try CurveKeys.generate()
        let stranger = try makeClient(identity: "stranger", serverKey: serverPublic, keys: outsider,
                                      endpoint: endpoint)
        try stranger.send(frames: [Array("let me in".utf8)])
        wait(for: [rejected], timeout: 2)
        XCTAssertThrowsError(try server.receive(timeout: .milliseconds(300))) { error in
            XCTAssertEqual(error as? ZMQError, .timeout(operation: "receive", seconds: 0.3))
        }
        let first = try XCTUnwrap(rejections.entries.first)
        XCTAssertEqual(first, ZAPRejection(mechanism: "CURVE", publicKey: outsider.publicKey, address: "127.0.0.1",
                                           domain: "", reason: "public key not in the allow-list"))

        let member = try makeClient(identity: "worker-1", serverKey: serverPublic,
                                    keys: (clientPublic, clientSecret), endpoint: endpoint)
        try member.send(frames: [Array("hello".utf8)])
        var frames: [ZMQMessage] = []
        try server.receive(into: &frames, timeout: .seconds(2))
        XCTAssertEqual(frames.map(\.array), [Array("worker-1".utf8), Array("hello".utf8)])
        XCTAssertEqual(frames[1].property("User-Id"), clientPublic, "ZAP names the sender's key")
        XCTAssertTrue(rejections.entries.allSatisfy { $0.publicKey == outsider.publicKey })
    }

    func testOneAuthenticatorPerContext() throws {
        let first = try ZAPAuthenticator(context: context, allowedPublicKeys: [])
        XCTAssertThrowsError(try ZAPAuthenticator(context: context, allowedPublicKeys: [])) { error in
            XCTAssertEqual(error as? ZMQError, .addressInUse(endpoint: ZAPAuthenticator.endpoint))
        }
        first.stop()
        first.stop()
        // The endpoint is free again once stopped.
        XCTAssertNoThrow(try ZAPAuthenticator(context: context, allowedPublicKeys: []).stop())
    }
}

/// Rejections reported on the authenticator's thread, read on the test's.
final class RejectionLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [ZAPRejection] = []

    func append(_ rejection: ZAPRejection) {
        lock.lock()
        stored.append(rejection)
        lock.unlock()
    }

    var entries: [ZAPRejection] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
