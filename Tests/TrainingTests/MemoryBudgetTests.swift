import Recurrent
import Training
import XCTest

/// The memory estimate the CLI checks flags against: parameter counts as the layout's,
/// overflow as "too much", and a refusal that names the flags and the limit.
final class MemoryBudgetTests: XCTestCase {
    func testParameterCountIsTheLayoutsWithoutBuildingIt() {
        for cell in CellType.allCases {
            for (V, H, L) in [(1, 1, 1), (65, 16, 2), (7, 3, 3)] {
                let layout = ParameterLayout(ModelConfig(cell: cell, vocabularySize: V, hiddenSize: H, layerCount: L))
                XCTAssertEqual(MemoryBudget.parameterCount(cell: cell, vocabularySize: V, hiddenSize: H, layers: L),
                               layout.count, "\(cell) V\(V) H\(H) L\(L)")
            }
        }
    }

    func testOverflowIsNil() {
        XCTAssertNil(MemoryBudget.parameterCount(cell: .lstm, vocabularySize: 65, hiddenSize: 1 << 40, layers: 2))
        XCTAssertNil(MemoryBudget.parameterCount(cell: .rnn, vocabularySize: 65, hiddenSize: 1 << 20, layers: Int.max))
        XCTAssertNil(MemoryBudget.trainingBytes(cell: .gru, vocabularySize: 65, hiddenSize: 256, layers: 2,
                                                streams: Int.max, window: Int.max, chunkStreams: 1))
        XCTAssertNil(MemoryBudget.samplingBytes(parameterCount: 10, length: Int.max))
    }

    func testTrainingBytesCountSlabsAndWorkspaces() throws {
        // P = 4·(16·(V+16+1)) + 16·V + V with V = 1 → 4·288 + 17 = 1169.
        let P = try XCTUnwrap(MemoryBudget.parameterCount(cell: .lstm, vocabularySize: 1, hiddenSize: 16, layers: 1))
        XCTAssertEqual(P, 1169)
        let bytes = try XCTUnwrap(MemoryBudget.trainingBytes(cell: .lstm, vocabularySize: 1, hiddenSize: 16, layers: 1,
                                                             streams: 8, window: 4, chunkStreams: 2))
        // 4 chunks: 4·P·(6 + 4), workspaces 4·N·(T+1)·(L·8·H + 2·4·H + V).
        XCTAssertEqual(bytes, 4 * P * 10 + 4 * 8 * 5 * (8 * 16 + 8 * 16 + 1))
    }

    func testRequireNamesTheFlagsAndTheLimit() {
        XCTAssertNoThrow(try MemoryBudget.require(100, for: "--hidden 8", limit: 100))
        XCTAssertThrowsError(try MemoryBudget.require(101, for: "--hidden 8", limit: 100)) { error in
            XCTAssertEqual(error as? MemoryBudgetError, .exceeds(what: "--hidden 8", neededBytes: 101, limitBytes: 100))
            XCTAssertTrue("\(error)".contains("--hidden 8") && "\(error)".contains("100 bytes of physical memory"), "\(error)")
        }
        XCTAssertThrowsError(try MemoryBudget.require(nil, for: "--layers 1000000000000", limit: 1 << 30)) { error in
            XCTAssertTrue("\(error)".contains("more than 2^63 bytes") && "\(error)".contains("1.0 GiB"), "\(error)")
        }
        XCTAssertGreaterThan(MemoryBudget.physicalBytes, 1 << 26)
    }
}
