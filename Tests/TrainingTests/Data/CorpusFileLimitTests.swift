import Foundation
import TestSupport
import Training
import XCTest

/// Files that are not a corpus must be refused before reading: /dev/zero never ends, a FIFO
/// blocks forever, an oversized file would be allocated whole.
final class CorpusFileLimitTests: XCTestCase {
    func testDeviceIsRefusedBeforeReading() throws {
        XCTAssertThrowsError(try Corpus.load(path: "/dev/zero")) { error in
            XCTAssertEqual(error as? CorpusError, .notRegularFile(path: "/dev/zero", kind: "character device"))
            XCTAssertTrue("\(error)".contains("--data"), "\(error)")
        }
    }

    /// A FIFO with no writer: opening must not block.
    func testFIFOIsRefusedWithoutBlocking() throws {
        let directory = TemporaryDirectory()
        let fifo = directory.child("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        XCTAssertThrowsError(try Corpus.load(path: fifo)) { error in
            XCTAssertEqual(error as? CorpusError, .notRegularFile(path: fifo, kind: "FIFO"))
        }
    }

    func testFileOverTheLimitIsRefusedWithTheLimit() throws {
        let directory = TemporaryDirectory()
        let path = directory.child("big.txt").path
        try Data(repeating: 0x61, count: 1000).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Corpus.load(path: path, maximumBytes: 999)) { error in
            XCTAssertEqual(error as? CorpusError, .tooLarge(path: path, byteCount: 1000, limit: 999))
        }
        XCTAssertEqual(try Corpus.load(path: path, maximumBytes: 1000).count, 1000)
        XCTAssertEqual(Corpus.maximumFileBytes, 4 << 30)
        XCTAssertTrue("\(CorpusError.tooLarge(path: path, byteCount: 5 << 30, limit: 4 << 30))".contains("4 GiB"))
    }
}
