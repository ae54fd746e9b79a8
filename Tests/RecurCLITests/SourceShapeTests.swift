import Foundation
import TestSupport
import XCTest

/// The size rules of the codebase (issue 20): no Swift file over 400 lines anywhere in
/// Sources, no function or initializer over 60 lines in Sources/Cluster, and no role that asks
/// whether its run is sharded (`shards == nil`, `if let shards`): the store plugged in decides.
/// A body is counted from its declaration to its closing brace (braces in string literals are
/// ignored).
final class SourceShapeTests: XCTestCase {
    private func swiftFiles(under folder: String) throws -> [URL] {
        let root = try XCTUnwrap(ProcessRunner.packageRoot()).appendingPathComponent(folder)
        let files = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)!
        return files.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }.sorted { $0.path < $1.path }
    }

    private func lines(_ url: URL) throws -> [String] {
        try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
    }

    func testNoSwiftFileIsOver400Lines() throws {
        for file in try swiftFiles(under: "Sources") {
            let count = try lines(file).count - 1
            XCTAssertLessThanOrEqual(count, 400, "\(file.path) has \(count) lines")
        }
    }

    func testNoFunctionInClusterIsOver60Lines() throws {
        for file in try swiftFiles(under: "Sources/Cluster") {
            for (name, length) in functionLengths(try lines(file)) {
                XCTAssertLessThanOrEqual(length, 60, "\(file.lastPathComponent): \(name) is \(length) lines")
            }
        }
    }

    func testNoRoleAsksWhetherItsRunIsSharded() throws {
        for file in try swiftFiles(under: "Sources/Cluster/Roles") {
            for (number, line) in try lines(file).enumerated() where line.contains("shards == nil") || line.contains("if let shards") || line.contains("shards != nil") {
                XCTFail("\(file.lastPathComponent):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
    }

    /// The checker itself: a 3-line function is 3 lines, braces in strings do not count.
    func testTheCounterCountsBodies() {
        let source = ["struct A {", "    func f() {", "        let s = \"{{\"", "    }", "    init() {", "    }", "}"]
        XCTAssertEqual(functionLengths(source).map(\.length), [3, 2])
    }

    /// (declaration, lines from it to its closing brace) of every `func` and `init` with a body.
    private func functionLengths(_ lines: [String]) -> [(name: String, length: Int)] {
        let declaration = try! NSRegularExpression(pattern: #"^\s*(@\w+\s+)*((public|private|fileprivate|internal|static|mutating|override|nonisolated)\s+)*(func\s+\S+|init[(<?])"#)
        let strings = try! NSRegularExpression(pattern: #""(\\.|[^"\\])*""#)
        var result: [(String, Int)] = []
        for (start, line) in lines.enumerated() {
            let range = NSRange(line.startIndex..., in: line)
            guard declaration.firstMatch(in: line, range: range) != nil else { continue }
            var depth = 0, opened = false
            for end in start..<lines.count {
                let text = strings.stringByReplacingMatches(in: lines[end], range: NSRange(lines[end].startIndex..., in: lines[end]), withTemplate: "")
                depth += text.filter { $0 == "{" }.count - text.filter { $0 == "}" }.count
                opened = opened || text.contains("{")
                if opened, depth <= 0 {
                    result.append((line.trimmingCharacters(in: .whitespaces), end - start + 1))
                    break
                }
                if !opened, end > start + 3 { break }   // a requirement without a body
            }
        }
        return result
    }
}
