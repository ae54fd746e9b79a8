import Foundation
import Wire
import TestSupport
import XCTest

/// The scripts around the protocol: decode-wire.py reads what the Swift encoder writes, and
/// the committed protoc-c output is what scripts/gen-proto makes from proto/recur.proto.
final class ToolTests: XCTestCase {
    let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Run {
        var status: Int32
        var output: String
        var errors: String
    }

    func run(_ executable: String, _ arguments: [String]) throws -> Run {
        let result = try ProcessRunner.run(URL(fileURLWithPath: executable), arguments, in: repository)
        return Run(status: result.status, output: result.standardOutput, errors: result.standardError)
    }

    func findOnPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A python that can import google.protobuf and reach a compiler (protoc or grpc_tools):
    /// Debian's /usr/bin/python3 (python3-protobuf) first, then the python3 on PATH.
    func pythonWithProtobuf() throws -> String? {
        let probe = "import google.protobuf, importlib.util, shutil, sys; "
            + "sys.exit(0 if shutil.which('protoc') or importlib.util.find_spec('grpc_tools') else 3)"
        for candidate in ["/usr/bin/python3", findOnPath("python3")].compactMap({ $0 }) {
            if FileManager.default.isExecutableFile(atPath: candidate),
               try run(candidate, ["-c", probe]).status == 0 {
                return candidate
            }
        }
        return nil
    }

    func testDecodeWireScriptReadsWhatTheEncoderWrites() throws {
        guard let python = try pythonWithProtobuf() else {
            throw XCTSkip("no python3 with google.protobuf and protoc (apt-get install python3-protobuf protobuf-compiler)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("decode-wire-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let big = WireTensor(name: "head.weight", shape: [10, 10], values: (0..<100).map { Float($0) / 8 })
        var push = Fixtures.gradientPush
        push.tensors.append(big)
        let messages: [Message] = [.hello(Fixtures.hello), .weights(Fixtures.weights), .gradientPush(push),
                                   .heartbeat(Fixtures.heartbeat)]
        var files: [String] = []
        for (index, message) in messages.enumerated() {
            let file = directory.appendingPathComponent("\(index).bin")
            try Data(WireCodec.encode(message)).write(to: file)
            files.append(file.path)
        }

        let result = try run(python, ["scripts/decode-wire.py"] + files)
        XCTAssertEqual(result.status, 0, result.errors)
        let lines = try result.output.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(lines.count, 4)
        guard lines.count == 4 else { return }
        XCTAssertEqual(lines.map { $0["type"] as? String }, ["hello", "weights", "gradient_push", "heartbeat"])
        XCTAssertEqual(lines.map { ($0["version"] as? NSNumber)?.intValue }, Array(repeating: Int(WireCodec.protocolVersion), count: 4))
        XCTAssertEqual(lines.map { ($0["bytes"] as? NSNumber)?.intValue }, messages.map { WireCodec.encode($0).count })

        let hello = try XCTUnwrap(lines[0]["body"] as? [String: Any])
        XCTAssertEqual(hello["vocabulary_digest"] as? String, Fixtures.hello.vocabularyDigest)
        XCTAssertNil(hello["model_config"], "v2 has no model_config")
        XCTAssertEqual((hello["pid"] as? NSNumber)?.intValue, 4242)

        let weights = try XCTUnwrap(lines[1]["body"] as? [String: Any])
        XCTAssertEqual((weights["step"] as? NSNumber)?.intValue, 9)
        XCTAssertEqual(weights["reset_state"] as? Bool, true)
        let tensors = try XCTUnwrap(weights["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.map { $0["name"] as? String }, ["rnn.weight_ih_l0", "head.bias"])
        XCTAssertEqual(tensors.map { ($0["shape"] as? [NSNumber])?.map(\.intValue) }, [[2, 3], [3]])
        let firstValues = try XCTUnwrap(tensors[0]["values"] as? [NSNumber]).map { Float($0.doubleValue) }
        XCTAssertEqual(firstValues, Fixtures.tensors[0].values, "float32 bits survive the trip through Python")
        XCTAssertEqual(tensors[1]["values"] as? [AnyHashable], ["inf", "-inf", Double(Float.leastNormalMagnitude)])

        let gradient = try XCTUnwrap(lines[2]["body"] as? [String: Any])
        XCTAssertEqual((gradient["token_count"] as? NSNumber)?.intValue, 512)
        XCTAssertEqual((gradient["loss_sum"] as? NSNumber)?.doubleValue, 1234.5625)
        let pushed = try XCTUnwrap(gradient["tensors"] as? [[String: Any]])
        XCTAssertEqual(pushed.last?["name"] as? String, "head.weight")
        XCTAssertEqual((pushed.last?["bytes"] as? NSNumber)?.intValue, 400)
        XCTAssertNil(pushed.last?["values"], "tensors over --max-values are summarised, not dumped")
        let state = try XCTUnwrap(gradient["state"] as? [[String: Any]])
        XCTAssertEqual(state.map { $0["name"] as? String }, ["state.h_l0", "state.c_l0"])
        let stateValues = try XCTUnwrap(state[1]["values"] as? [NSNumber]).map { Float($0.doubleValue) }
        XCTAssertEqual(stateValues, [1, 2, 3, 4, 5, 6])

        let heartbeat = try XCTUnwrap(lines[3]["body"] as? [String: Any])
        XCTAssertEqual((heartbeat["rank"] as? NSNumber)?.intValue, 2)
        XCTAssertEqual((heartbeat["step"] as? NSNumber)?.intValue, 99)

        // A truncated file is reported in one line, not a traceback.
        let truncated = directory.appendingPathComponent("truncated.bin")
        try Data(WireCodec.encode(.weights(Fixtures.weights)).prefix(20)).write(to: truncated)
        let failure = try run(python, ["scripts/decode-wire.py", truncated.path])
        XCTAssertEqual(failure.status, 1)
        XCTAssert(failure.errors.hasPrefix("decode-wire: \(truncated.path): truncated or malformed Envelope (20 bytes)"),
                  failure.errors)
        XCTAssertFalse(failure.errors.contains("Traceback"))

        // Without site-packages the protobuf package is gone: a clear message, exit 2.
        let missing = try run(python, ["-S", "scripts/decode-wire.py", files[0]])
        XCTAssertEqual(missing.status, 2)
        XCTAssert(missing.errors.contains("the python protobuf package is not importable"), missing.errors)
    }

    func testCommittedProtocOutputIsCurrent() throws {
        guard findOnPath("protoc-c") != nil else {
            throw XCTSkip("protoc-c not on PATH (apt-get install protobuf-c-compiler)")
        }
        let result = try run("/bin/bash", ["scripts/gen-proto", "--check"])
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertEqual(result.output, "gen-proto: Sources/CWire is current\n")
    }
}
