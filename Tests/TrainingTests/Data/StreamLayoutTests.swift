import XCTest
import Training

final class StreamLayoutTests: XCTestCase {
    /// nTrain = 23, N = 2, T = 3: R = floor(22/6)·3 = 9, three steps per epoch.
    /// Stream 0 reads train[0..<9], stream 1 train[9..<18]; targets one later.
    func testHandMadeExample() {
        let train = (0..<23).map { Int32(100 + $0) }
        let layout = StreamLayout(trainCount: 23, streams: 2, window: 3)
        XCTAssertEqual(layout.streamLength, 9)
        XCTAssertEqual(layout.stepsPerEpoch, 3)
        XCTAssertEqual(layout.tokensPerEpoch, 18)

        let step0 = layout.batch(train: train, streams: 0..<2, stepInEpoch: 0)
        XCTAssertEqual(step0.inputs, [100, 101, 102, 109, 110, 111])
        XCTAssertEqual(step0.targets, [101, 102, 103, 110, 111, 112])
        let step2 = layout.batch(train: train, streams: 0..<2, stepInEpoch: 2)
        XCTAssertEqual(step2.inputs, [106, 107, 108, 115, 116, 117])
        XCTAssertEqual(step2.targets, [107, 108, 109, 116, 117, 118])
        let secondOnly = layout.batch(train: train, streams: 1..<2, stepInEpoch: 1)
        XCTAssertEqual(secondOnly.inputs, [112, 113, 114])
        XCTAssertEqual(secondOnly.targets, [113, 114, 115])
    }

    /// The formula on other shapes, including the tightest fit nTrain = N·T + 1.
    func testStreamLengthFormula() {
        for (n, N, T, R) in [(7, 2, 3, 3), (6, 1, 5, 5), (1_003_854, 32, 100, 31_300), (100, 3, 4, 32), (101, 5, 20, 20)] {
            let layout = StreamLayout(trainCount: n, streams: N, window: T)
            XCTAssertEqual(layout.streamLength, R, "n=\(n) N=\(N) T=\(T)")
            XCTAssertEqual(layout.streamLength, (n - 1) / (N * T) * T)
            XCTAssertEqual(layout.stepsPerEpoch, R / T)
            XCTAssertLessThanOrEqual(N * R, n - 1)
        }
        XCTAssertEqual(StreamLayout.minimumTrainCount(streams: 4, window: 25), 101)
    }

    /// Blocks of streams filled separately, stacked, equal the whole-batch fill at every step;
    /// and every step's window follows the formula element by element.
    func testBlocksUnionEqualsWholeBatch() {
        let train = (0..<1_000).map { Int32(($0 * 7919) % 251) }
        let layout = StreamLayout(trainCount: train.count, streams: 7, window: 5)
        let R = layout.streamLength, T = 5
        for k in 0..<layout.stepsPerEpoch {
            let whole = layout.batch(train: train, streams: 0..<7, stepInEpoch: k)
            for b in 0..<7 {
                for t in 0..<T {
                    XCTAssertEqual(whole.inputs[b * T + t], train[b * R + k * T + t])
                    XCTAssertEqual(whole.targets[b * T + t], train[b * R + k * T + t + 1])
                }
            }
            for parts in [2, 3, 7] {
                var inputs: [Int32] = [], targets: [Int32] = []
                for block in StreamLayout.contiguousBlocks(of: 0..<7, parts: parts) {
                    let piece = layout.batch(train: train, streams: block, stepInEpoch: k)
                    inputs += piece.inputs
                    targets += piece.targets
                }
                XCTAssertEqual(inputs, whole.inputs, "step \(k) parts \(parts)")
                XCTAssertEqual(targets, whole.targets, "step \(k) parts \(parts)")
            }
        }
    }

    func testPosition() {
        let layout = StreamLayout(trainCount: 23, streams: 2, window: 3)  // 3 steps per epoch
        XCTAssertEqual(layout.position(globalStep: 0).epoch, 0)
        XCTAssertEqual(layout.position(globalStep: 0).stepInEpoch, 0)
        XCTAssertEqual(layout.position(globalStep: 2).epoch, 0)
        XCTAssertEqual(layout.position(globalStep: 2).stepInEpoch, 2)
        XCTAssertEqual(layout.position(globalStep: 3).epoch, 1)
        XCTAssertEqual(layout.position(globalStep: 3).stepInEpoch, 0)
        XCTAssertEqual(layout.position(globalStep: 10).epoch, 3)
        XCTAssertEqual(layout.position(globalStep: 10).stepInEpoch, 1)
    }

    func testContiguousBlocks() {
        XCTAssertEqual(StreamLayout.contiguousBlocks(of: 0..<10, parts: 3), [0..<4, 4..<7, 7..<10])
        XCTAssertEqual(StreamLayout.contiguousBlocks(of: 4..<7, parts: 3), [4..<5, 5..<6, 6..<7])
        XCTAssertEqual(StreamLayout.contiguousBlocks(of: 0..<2, parts: 4), [0..<1, 1..<2, 2..<2, 2..<2])
        XCTAssertEqual(StreamLayout.contiguousBlocks(of: 0..<8, parts: 1), [0..<8])
    }
}
