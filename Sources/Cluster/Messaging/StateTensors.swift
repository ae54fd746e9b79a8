import Training
import Wire

/// Carried state on the wire: the rows of a block of streams as tensors "h" (and "c"),
/// each (L, n, H). The one conversion between `CarriedState` and `WireTensor`.
extension CarriedState {
    /// The state of `streams` as wire tensors.
    func wireTensors(streams: Range<Int>) -> [WireTensor] {
        tensorNames.map { WireTensor(name: $0, shape: shape(streams: streams.count), values: block($0, streams: streams)) }
    }

    /// Why `tensors` cannot be the state of `streams` (names, shapes, finite values); nil if they can.
    func problem(with tensors: [WireTensor], streams: Range<Int>) -> String? {
        let expected = shape(streams: streams.count)
        guard tensors.map(\.name) == tensorNames else {
            return "state tensors \(tensors.map(\.name)), expected \(tensorNames)"
        }
        for t in tensors where t.shape != expected {
            return "state tensor \(t.name): shape \(t.shape), expected \(expected)"
        }
        for t in tensors where !t.values.allSatisfy(\.isFinite) {
            return "state tensor \(t.name) holds values that are not finite"
        }
        return nil
    }

    /// Writes checked tensors (see `problem(with:streams:)`) into the rows of `streams`.
    func set(_ tensors: [WireTensor], streams: Range<Int>) {
        for t in tensors { t.values.withUnsafeBufferPointer { setBlock(t.name, streams: streams, from: $0) } }
    }
}
