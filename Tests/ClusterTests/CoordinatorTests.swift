import Foundation
import XCTest
import Cluster
import Recurrent
import Training
import Wire

/// The coordinator against peers that get things wrong: differing fingerprints, bytes that
/// are not messages, and a joined worker's bad pushes. Each is refused or logged and dropped;
/// the run goes on and still ends with the reference weights.
final class CoordinatorTests: ClusterTestCase {
    // MARK: Join

    func testRefusesAWorkerWhoseCorpusDiffersAndKeepsWaiting() throws {
        let config = ClusterFixtures.tinyConfig(steps: 20)
        let reference = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: temporaryDirectory()))
        let coordinator = try startCoordinator(session, workers: 1)

        // Same scalars in another order: same vocabulary, another corpus digest.
        let reversed = Corpus(text: String(BuiltinCorpus.text(seed: 7, targetSize: 600).prefix(520).reversed()), name: "reversed")
        XCTAssertEqual(reversed.vocabulary.digest, ClusterFixtures.corpus.vocabulary.digest)
        XCTAssertNotEqual(reversed.digest, ClusterFixtures.corpus.digest)

        let stranger = try startWorker(coordinator.endpoint, corpus: reversed)
        let refused = try XCTUnwrap(stranger.wait(timeout: 10))
        XCTAssertThrowsError(try refused.get()) { error in
            guard case ClusterError.refused(let text) = error else {
                return XCTFail("expected ClusterError.refused, got \(error)")
            }
            XCTAssertTrue(text.contains("corpus_digest \(reversed.digest.prefix(12))"), text)
            XCTAssertTrue(text.contains(String(ClusterFixtures.corpus.digest.prefix(12))), "names the coordinator's digest: \(text)")
            XCTAssertFalse(text.contains("vocabulary_digest"), "only the corpus differs: \(text)")
        }
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["refused worker", "corpus_digest"]), coordinator.logs.text)
        XCTAssertFalse(coordinator.isFinished, "the coordinator keeps waiting for a worker that fits")

        // The right worker still joins and the run completes.
        let worker = try startWorker(coordinator.endpoint)
        let summary = try XCTUnwrap(coordinator.wait(timeout: 30)).get()
        XCTAssertEqual(summary.steps, 20)
        XCTAssertTrue(session.update.values == reference.values)
        XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get())
    }

    func testRefusalNamesEveryDifferingFieldAndTheProtocolVersions() throws {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(steps: 5), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options())
        let coordinator = try startCoordinator(session, workers: 1)
        let peer = try FakeWorker(endpoint: coordinator.endpoint, identity: "mismatch")

        var hello = peer.hello()
        hello.vocabularyDigest = String(repeating: "ab", count: 32)
        try peer.send(.hello(hello))
        let reply = try XCTUnwrap(peer.next(timeout: 5), "no reply to a mismatched hello")
        guard case .error(let error) = reply else { return XCTFail("expected an error reply, got \(reply.kind)") }
        XCTAssertTrue(error.message.contains("vocabulary_digest abababababab"), error.message)
        XCTAssertFalse(error.message.contains("corpus_digest"), error.message)

        // A hello of protocol version 6: refused with both versions named.
        try peer.send(bytes: try otherVersion(.hello(peer.hello())))
        let versionReply = try XCTUnwrap(peer.next(timeout: 5), "no reply to a version 6 hello")
        guard case .error(let versionError) = versionReply else { return XCTFail("expected an error reply, got \(versionReply.kind)") }
        XCTAssertEqual(versionError.message, "protocol version 5, expected 6")
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from peer", "protocol version 5, expected 6"]),
                        coordinator.logs.text)

        // Neither joined: the job still takes its one worker.
        _ = try startWorker(coordinator.endpoint)
        XCTAssertEqual(try XCTUnwrap(coordinator.wait(timeout: 30)).get().steps, 5)
        XCTAssertNotNil(coordinator.logs.line(containing: ["worker 0 (host", "joined"]))
        XCTAssertNil(coordinator.logs.line(containing: ["fakehost", "joined"]), coordinator.logs.text)
    }

    func testMoreWorkersThanChunksIsRefusedUpFront() throws {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options())
        XCTAssertThrowsError(try Coordinator(plan: session.plan, corpus: session.corpus, options: CoordinatorOptions(workers: 5),
                                             transport: InMemoryNetwork().server(), stop: StopRequest(), update: session.update, log: { _ in })) { error in
            XCTAssertEqual(error as? ClusterError, .tooFewChunks(workers: 5, chunks: 4))
        }
    }

    func testJoinTimesOutNamingHowManyJoined() throws {
        let session = try TrainingSession(config: ClusterFixtures.tinyConfig(), corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options())
        let coordinator = try startCoordinator(session, workers: 2, joinTimeout: 1.5)
        let worker = try startWorker(coordinator.endpoint, heartbeatTimeout: 3)
        let result = try XCTUnwrap(coordinator.wait(timeout: 10))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertEqual(error as? ClusterError, .joinTimeout(joined: 1, expected: 2, seconds: 1.5))
        }
        // The worker that did join is told why the run ends (Worker.awaitWelcome turns a
        // shutdown into "coordinator ended the run before it started: …") rather than being
        // left to time out and blame a silent coordinator.
        let ended = try XCTUnwrap(worker.wait(timeout: 10))
        XCTAssertThrowsError(try ended.get()) { error in
            guard let text = (error as? StopRequest.Stopped)?.reason else {
                return XCTFail("the joined worker should get a shutdown naming the join timeout, got: \(error)")
            }
            XCTAssertTrue(text.contains("before it started") && text.contains("1 of 2 workers joined"), text)
        }
    }

    // MARK: Bytes that are not messages, from a process that is not a worker

    func testRejectsMalformedMessagesFromAnOutsiderWhileWorkersTrain() throws {
        let config = ClusterFixtures.tinyConfig(steps: 20)
        let reference = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: temporaryDirectory()))
        // Hold the run after step 3 while the outsider sends, so everything arrives mid-run.
        let reached = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let coordinator = try startCoordinator(session, workers: 2) { step in
            guard step == 3 else { return }
            reached.signal()
            _ = release.wait(timeout: .now() + 10)
        }
        let workers = try [startWorker(coordinator.endpoint), startWorker(coordinator.endpoint)]
        XCTAssertEqual(reached.wait(timeout: .now() + 20), .success, "the run never reached step 3: \(coordinator.logs.text)")

        let outsider = try FakeWorker(endpoint: coordinator.endpoint, identity: "intruder")
        let who = "rejected message from peer " + Array("intruder".utf8).map { String(format: "%02x", $0) }.joined()

        let garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        let hello = WireCodec.encode(.hello(outsider.hello()))
        let truncated = Array(hello.prefix(hello.count - 9))
        let noBody: [UInt8] = [0x08, 0x06]  // version 6, nothing else
        let push = WireCodec.encode(.gradientPush(GradientPush(step: 3, tokenCount: 32, lossSum: 1, tensors: [],
                                                               computeSeconds: 0, communicateSeconds: 0)))
        // The test's own premise: these really are invalid to the decoder.
        XCTAssertThrowsError(try WireCodec.decode(garbage, limits: .standard))
        XCTAssertThrowsError(try WireCodec.decode(truncated, limits: .standard))

        try outsider.send(bytes: garbage)
        try outsider.send(bytes: truncated)
        try outsider.send(bytes: [])
        try outsider.send(frames: [noBody, noBody])
        try outsider.send(frames: Array(repeating: noBody, count: 20))  // past the 16-frame receive limit
        try outsider.send(bytes: noBody)
        try outsider.send(bytes: try otherVersion(.hello(outsider.hello())))
        try outsider.send(bytes: hello)
        try outsider.send(bytes: push)

        // Bigger than the coordinator's limit: ZMQ_MAXMSGSIZE may drop it (and the
        // connection) before the decoder sees it, so it comes from a second socket.
        let limit = DecodeLimits(layout: session.layout,
                                 extraValues: 2 * session.model.layerCount * config.streams * session.model.hiddenSize).maxMessageBytes
        let big = try FakeWorker(endpoint: coordinator.endpoint, identity: "bigmouth")
        let oversized = WireCodec.encode(.error(WireErrorMessage(message: String(repeating: "x", count: limit + 1024))))
        XCTAssertGreaterThan(oversized.count, limit)
        try big.send(bytes: oversized)
        release.signal()

        for (label, fragments) in [
            ("garbage", [who, "truncated or malformed message (7 bytes)"]),
            ("truncated", [who, "truncated or malformed message (\(truncated.count) bytes)"]),
            ("empty", [who, "empty message (0 bytes)"]),
            ("two frames", [who, "2 body frames, expected 1"]),
            ("twenty frames", ["rejected message", "21 frames"]),
            ("no body", [who, "message has no body"]),
            ("version 5", [who, "protocol version 5, expected 6"]),
            ("hello mid-run", [who, "hello from a process that is not a worker of this job"]),
            ("push from outsider", [who, "gradient_push from a process that is not a worker of this job"]),
        ] {
            XCTAssertNotNil(coordinator.logs.waitForLine(containing: fragments), "\(label) not logged:\n\(coordinator.logs.text)")
        }
        var replies: [String] = []
        while replies.count < 2, let reply = try outsider.next(timeout: 5) {
            guard case .error(let error) = reply else { XCTFail("unexpected \(reply.kind) to an outsider"); continue }
            replies.append(error.message)
        }
        XCTAssertEqual(replies.sorted(), ["protocol version 5, expected 6", "this job already has its 2 workers"])

        let summary = try XCTUnwrap(coordinator.wait(timeout: 30)).get()
        XCTAssertEqual(summary.steps, 20)
        XCTAssertTrue(session.update.values == reference.values, "a rejected message changed the weights")
        XCTAssertNil(coordinator.logs.line(containing: ["error from"]), "the oversized message was taken as a message")
        for worker in workers { XCTAssertNoThrow(try XCTUnwrap(worker.wait(timeout: 10)).get()) }
    }

    // MARK: Bad pushes from a joined worker

    /// W = 3: fake A misbehaves, fake B is honest but pushes only when the test says (so the
    /// step stays open while A's duplicate arrives), the third is a real `Worker`.
    func testRejectsStaleDuplicateAndMisshapedPushesFromAWorker() throws {
        let config = ClusterFixtures.tinyConfig(steps: 20)
        let reference = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: temporaryDirectory()))
        // Fakes push when the test says: without --balance off the idle real worker would be
        // given their nodes (re-issue) and they would be welcomed again instead of weighted.
        let coordinator = try startCoordinator(session, workers: 3, heartbeatTimeout: 10, balance: false)
        let a = try FakeWorker(endpoint: coordinator.endpoint, identity: "fake-a", pid: 4242)
        let b = try FakeWorker(endpoint: coordinator.endpoint, identity: "fake-b", pid: 4243)
        try a.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [a.name(rank: 0), "joined", "(1/3)"]), coordinator.logs.text)
        try b.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [b.name(rank: 1), "joined", "(2/3)"]), coordinator.logs.text)
        let real = try startWorker(coordinator.endpoint)
        XCTAssertEqual(try a.awaitWelcome().streamBegin..<a.welcome!.streamEnd, 0..<4)
        XCTAssertEqual(try b.awaitWelcome().streamBegin..<b.welcome!.streamEnd, 4..<6)

        let name = a.name(rank: 0)
        var previous: GradientPush?
        for s in 0..<config.steps {
            let weightsA = try a.awaitWeights(), weightsB = try b.awaitWeights()
            XCTAssertEqual(weightsA.step, UInt64(s))
            XCTAssertEqual(weightsB.step, UInt64(s))
            let pushA = try a.honestPush(for: weightsA), pushB = try b.honestPush(for: weightsB)
            switch s {
            case 1:
                var misshaped = pushA
                let first = a.layout.slices[0]
                misshaped.tensors[0] = WireTensor(name: first.name, shape: [first.count], values: pushA.tensors[0].values)
                var short = pushA
                short.tensors.removeLast()
                var tokens = pushA
                tokens.tokenCount += 8
                var flatState = pushA
                flatState.state[0] = WireTensor(name: "h", shape: [pushA.state[0].values.count], values: pushA.state[0].values)
                var noState = pushA
                noState.state = []
                for bad in [misshaped, short, tokens, flatState, noState] { try a.send(.gradientPush(bad)) }
                let encoded = WireCodec.encode(.gradientPush(pushA))
                try a.send(bytes: Array(encoded.prefix(encoded.count / 2)))
                try a.send(.weights(Weights(step: UInt64(s), resetState: false, tensors: pushA.tensors)))
                try a.send(.hello(a.hello()))
                try a.send(.gradientPush(pushA))
                let sliceShape = "[" + first.shape.map(String.init).joined(separator: ",") + "]"
                for (label, fragment) in [
                    ("misshaped", "tensor \(first.name): shape [\(first.count)], expected \(sliceShape)"),
                    ("tensor count", "\(a.layout.slices.count - 1) tensors, expected \(a.layout.slices.count)"),
                    ("token count", "gradient over \(pushA.tokenCount + 8) tokens, expected \(pushA.tokenCount)"),
                    ("state shape", "state tensor h: shape [\(pushA.state[0].values.count)], expected [2, 4, 16]"),
                    ("no state", "state tensors [], expected [\"h\", \"c\"]"),
                    ("truncated", "truncated or malformed message (\(encoded.count / 2) bytes)"),
                    ("weights", "unexpected weights during step 2"),
                    ("hello", "unexpected hello during step 2"),
                ] {
                    XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from \(name): \(fragment)"]),
                                    "\(label) not logged:\n\(coordinator.logs.text)")
                }
            case 2:
                try a.send(.gradientPush(previous!))
                var future = pushA
                future.step += 1
                try a.send(.gradientPush(future))
                try a.send(.gradientPush(pushA))
                // Same step again, other numbers: must not be summed.
                var duplicate = pushA
                duplicate.tensors = duplicate.tensors.map { WireTensor(name: $0.name, shape: $0.shape, values: $0.values.map { $0 * 1000 + 1 }) }
                try a.send(.gradientPush(duplicate))
                for (label, fragment) in [
                    ("stale", "stale gradient for step 2, expected step 3"),
                    ("future", "gradient for future step 4, expected step 3"),
                    ("duplicate", "duplicate gradient for step 3"),
                ] {
                    XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from \(name): \(fragment)"]),
                                    "\(label) not logged:\n\(coordinator.logs.text)")
                }
            case 4:
                // An impostor connecting with A's identity: the ROUTER refuses the second
                // connection (no handover), so its push never counts as A's.
                let impostor = try FakeWorker(endpoint: coordinator.endpoint, identity: a.identity)
                var forged = pushA
                forged.tensors = forged.tensors.map { WireTensor(name: $0.name, shape: $0.shape, values: $0.values.map { _ in 7 }) }
                try impostor.send(.gradientPush(forged))
                Thread.sleep(forTimeInterval: 0.3)
                try a.send(.gradientPush(pushA))
            default:
                try a.send(.gradientPush(pushA))
            }
            try b.send(.gradientPush(pushB))
            previous = pushA
        }
        XCTAssertEqual(try a.awaitShutdown(), "training finished at step 20")
        XCTAssertEqual(try b.awaitShutdown(), "training finished at step 20")
        let summary = try XCTUnwrap(coordinator.wait(timeout: 30)).get()
        XCTAssertEqual(summary.steps, 20)
        XCTAssertTrue(session.update.values == reference.values, "a rejected push changed the weights")
        XCTAssertNil(coordinator.logs.line(containing: ["duplicate gradient for step 5"]), "the impostor's push was taken as A's")
        XCTAssertNoThrow(try XCTUnwrap(real.wait(timeout: 10)).get())
    }
}

extension CoordinatorTests {
    /// A push may arrive in parts (the top layer first, the rest last). Parts that repeat,
    /// overlap, disagree on the part count or leave a hole are rejected; honest parts in
    /// either order give the same weights as whole pushes.
    func testPartedPushesAreAssembledAndBadPartsRejected() throws {
        let config = ClusterFixtures.tinyConfig(steps: 6)
        let reference = try ClusterFixtures.localReference(config: config, directory: temporaryDirectory())
        let session = try TrainingSession(config: config, corpus: ClusterFixtures.corpus,
                                          options: ClusterFixtures.options(checkpoint: temporaryDirectory()))
        let coordinator = try startCoordinator(session, workers: 2, heartbeatTimeout: 10, balance: false)   // the fake is slow on purpose
        let a = try FakeWorker(endpoint: coordinator.endpoint, identity: "parts-a", pid: 5151)
        try a.sayHello()
        XCTAssertNotNil(coordinator.logs.waitForLine(containing: [a.name(rank: 0), "joined"]), coordinator.logs.text)
        let real = try startWorker(coordinator.endpoint)
        _ = try a.awaitWelcome()
        let name = a.name(rank: 0), count = a.layout.slices.count
        let split = count - 3   // parts: [0, split) last, [split, count) first

        func part(_ push: GradientPush, _ slices: Range<Int>, _ index: UInt32, of parts: UInt32) -> GradientPush {
            var p = push
            p.tensors = Array(push.tensors[slices])
            p.part = index
            p.parts = parts
            if index != parts - 1 { p.tokenCount = 0; p.lossSum = 0; p.state = [] }
            return p
        }
        for s in 0..<config.steps {
            let push = try a.honestPush(for: try a.awaitWeights())
            let early = part(push, split..<count, 0, of: 2), last = part(push, 0..<split, 1, of: 2)
            switch s {
            case 1:
                try a.send(.gradientPush(early))
                try a.send(.gradientPush(early))                                     // the same part again
                try a.send(.gradientPush(part(push, (split - 1)..<count, 0, of: 3)))  // another part count
                try a.send(.gradientPush(part(push, (split - 1)..<split, 1, of: 2)))  // last part, but a hole before it
                for (label, fragment) in [
                    ("repeat", "duplicate gradient part 1 of 2 for step 2"),
                    ("part count", "gradient in 3 parts after a part of 2"),
                    ("hole", "gradient parts for step 2 do not cover the whole table"),
                ] {
                    XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from \(name): \(fragment)"]),
                                    "\(label) not logged:\n\(coordinator.logs.text)")
                }
                try a.send(.gradientPush(early))
                try a.send(.gradientPush(part(push, (split - 2)..<split, 1, of: 2)))   // still a hole at the start
                XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from \(name): gradient parts for step 2 do not cover"]))
                try a.send(.gradientPush(early))
                try a.send(.gradientPush(part(push, (split - 1)..<(split + 1), 1, of: 2)))  // repeats the early part's first tensor
                XCTAssertNotNil(coordinator.logs.waitForLine(containing: ["rejected message from \(name): gradient part repeats tensors already received for step 2"]),
                                coordinator.logs.text)
                try a.send(.gradientPush(last))
            case 3:
                try a.send(.gradientPush(last))    // parts in the other order
                try a.send(.gradientPush(early))
            default:
                try a.send(.gradientPush(early))
                try a.send(.gradientPush(last))
            }
        }
        XCTAssertEqual(try a.awaitShutdown(), "training finished at step \(config.steps)")
        let summary = try XCTUnwrap(coordinator.wait(timeout: 30)).get()
        XCTAssertEqual(summary.steps, config.steps)
        XCTAssertTrue(session.update.values == reference.values, "parted pushes changed the weights")
        XCTAssertNoThrow(try XCTUnwrap(real.wait(timeout: 10)).get())
    }
}

/// `message` encoded with the envelope's version varint (field 1, first two bytes) set to 5.
func otherVersion(_ message: Message) throws -> [UInt8] {
    var bytes = WireCodec.encode(message)
    XCTAssertEqual(Array(bytes.prefix(2)), [0x08, 0x06], "the envelope starts with version = 6")
    bytes[1] = 0x05
    return bytes
}
