import CWire
import Recurrent

// Borrowed protobuf-c views of Swift values, built in temporary memory for one pack call.
// Nothing here copies tensor data: a C tensor's `data` points at the floats where they live.

#if _endian(big)
#error("Wire copies float32 tensors with memcpy and assumes a little-endian host, as the wire is")
#endif

/// One tensor as the packer sees it: name, shape, and its float32 bytes in place.
struct TensorView {
    var name: String
    var shape: [Int]
    var bytes: UnsafeRawBufferPointer
}

/// Views of every slice of a parameter slab, in layout order.
func tensorViews(layout: ParameterLayout, values: UnsafeBufferPointer<Float>) -> [TensorView] {
    precondition(values.count == layout.count,
                 "slab holds \(values.count) values, layout \(layout.count)")
    return layout.slices.map { slice in
        TensorView(name: slice.name, shape: slice.shape,
                   bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: values[slice.range])))
    }
}

/// Calls `body` with views of `tensors`, each array's storage pinned for the duration.
func withTensorViews<R>(_ tensors: [WireTensor], _ body: ([TensorView]) throws -> R) rethrows -> R {
    var views: [TensorView] = []
    views.reserveCapacity(tensors.count)
    return try pinTensors(tensors, from: 0, into: &views, body)
}

/// One nesting level per tensor: `withUnsafeBytes` pins only inside its closure.
private func pinTensors<R>(_ tensors: [WireTensor], from index: Int, into views: inout [TensorView],
                           _ body: ([TensorView]) throws -> R) rethrows -> R {
    if index == tensors.count { return try body(views) }
    let tensor = tensors[index]
    return try tensor.values.withUnsafeBytes { bytes in
        views.append(TensorView(name: tensor.name, shape: tensor.shape, bytes: bytes))
        return try pinTensors(tensors, from: index + 1, into: &views, body)
    }
}

/// NUL-terminated copies of `strings` in one temporary arena, valid only inside `body`.
/// A string with an embedded NUL would be cut there (protobuf-c strings are C strings).
func withCStrings<R>(_ strings: [String],
                     _ body: ([UnsafeMutablePointer<CChar>]) throws -> R) rethrows -> R {
    let total = strings.reduce(0) { $0 + $1.utf8.count + 1 }
    return try withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { arena in
        var pointers: [UnsafeMutablePointer<CChar>] = []
        pointers.reserveCapacity(strings.count)
        var position = 0
        for string in strings {
            pointers.append(arena.baseAddress! + position)
            for byte in string.utf8 {
                (arena.baseAddress! + position).initialize(to: CChar(bitPattern: byte))
                position += 1
            }
            (arena.baseAddress! + position).initialize(to: 0)
            position += 1
        }
        return try body(pointers)
    }
}

/// The protobuf-c `repeated Tensor` for `views`: (count, array of tensor pointers), laid out
/// in temporary memory and valid only inside `body`.
func withCTensors<R>(_ views: [TensorView],
                     _ body: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Recur__Tensor>?>?) throws -> R)
    rethrows -> R
{
    let count = views.count
    if count == 0 { return try body(0, nil) }
    let dimensionCount = views.reduce(0) { $0 + $1.shape.count }
    return try withCStrings(views.map(\.name)) { names in
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: max(dimensionCount, 1)) { dimensions in
            try withUnsafeTemporaryAllocation(of: Recur__Tensor.self, capacity: count) { tensors in
                try withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Recur__Tensor>?.self,
                                                  capacity: count) { pointers in
                    var next = dimensions.baseAddress!
                    for (index, view) in views.enumerated() {
                        var tensor = Recur__Tensor()
                        recur__tensor__init(&tensor)
                        tensor.name = names[index]
                        tensor.n_shape = view.shape.count
                        tensor.shape = view.shape.isEmpty ? nil : next
                        for dimension in view.shape {
                            next.initialize(to: UInt64(dimension))
                            next += 1
                        }
                        tensor.data = ProtobufCBinaryData(
                            len: view.bytes.count,
                            data: UnsafeMutablePointer(mutating: view.bytes.baseAddress?
                                .assumingMemoryBound(to: UInt8.self)))
                        let slot = tensors.baseAddress! + index
                        slot.initialize(to: tensor)
                        (pointers.baseAddress! + index).initialize(to: slot)
                    }
                    return try body(count, pointers.baseAddress)
                }
            }
        }
    }
}
