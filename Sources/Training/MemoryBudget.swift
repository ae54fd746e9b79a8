#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Recurrent

/// Memory a run will need, computed from the flags before anything is allocated, so that a
/// model or batch too large for the machine is refused with one line instead of dying in
/// `allocate` (or looping for hours over a billion layers).
///
/// Dimensions: P parameters, N streams, T window, V vocabulary, H hidden, L layers,
/// G gate blocks (RNN 1, GRU 3, LSTM 4), C gradient chunks (N / chunk streams).
///
///     training  = 4·P·(1 parameters + 1 gradient + 2 optimizer + C chunk slabs + 2 prepared weights)
///               + 4·N·(T+1)·(L·(2+G+LSTM?2:0+GRU?1:0)·H + 2·G·H + V)       workspaces
///     sampling  = 4·P·3 (weights, prepared copies) + 12 bytes per generated character
///
/// The figures are estimates (the workspace formula is `RecurrentNetwork`'s), used as a lower
/// bound: a run refused here could not have run; one accepted may still be tight. All
/// arithmetic is overflow-checked; an overflow means "more than any machine has".
public enum MemoryBudget {
    /// Physical memory of this machine: sysconf(_SC_PHYS_PAGES) × sysconf(_SC_PAGESIZE),
    /// or Int.max when the system does not say.
    public static var physicalBytes: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return Int.max }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? Int.max : bytes
    }

    /// P for this model, or nil when it does not fit in an Int (ParameterLayout's table, counted
    /// without building it).
    public static func parameterCount(cell: CellType, vocabularySize V: Int, hiddenSize H: Int, layers L: Int) -> Int? {
        guard V > 0, H > 0, L > 0 else { return nil }
        let G = cell.gateCount
        let biases = cell.hasRecurrentBias ? 2 : 1
        // Layer 0: G·H·V + G·H·H + biases·G·H; layers above: G·H·H·2 + biases·G·H; head V·H + V.
        guard let GH = multiply(G, H),
              let first = add(multiply(GH, V), multiply(GH, H), multiply(biases, GH)),
              let upper = add(multiply(multiply(GH, H), 2), multiply(biases, GH)),
              let head = add(multiply(V, H), V) else { return nil }
        return add(first, multiply(upper, L - 1), head)
    }

    /// Bytes of a training run in one process (see the type's formula), nil on overflow.
    public static func trainingBytes(cell: CellType, vocabularySize V: Int, hiddenSize H: Int, layers L: Int,
                                     streams N: Int, window T: Int, chunkStreams: Int) -> Int? {
        guard N > 0, T > 0, chunkStreams > 0,
              let P = parameterCount(cell: cell, vocabularySize: V, hiddenSize: H, layers: L) else { return nil }
        let G = cell.gateCount
        let chunks = max(1, N / chunkStreams)
        let perLayer = 2 + G + (cell == .lstm ? 2 : 0) + (cell == .gru ? 1 : 0)
        let slabs = multiply(multiply(P, 4), add(6, chunks))
        let row = add(multiply(multiply(L, perLayer), H), multiply(multiply(2, G), H), V)
        let workspace = multiply(multiply(multiply(4, N), add(T, 1)), row)
        return add(slabs, workspace)
    }

    /// Bytes to generate `length` characters from a model of `parameterCount` parameters.
    public static func samplingBytes(parameterCount P: Int, length: Int) -> Int? {
        guard P >= 0, length >= 0 else { return nil }
        return add(multiply(multiply(P, 4), 3), multiply(length, 12))
    }

    /// Throws `MemoryBudgetError.exceeds` unless `bytes` (nil = overflow) is at most `limit`.
    /// `what` names the flags and values responsible, e.g. "--hidden 100000 --layers 2".
    public static func require(_ bytes: Int?, for what: String, limit: Int = physicalBytes) throws(MemoryBudgetError) {
        guard let bytes, bytes <= limit else {
            throw MemoryBudgetError.exceeds(what: what, neededBytes: bytes, limitBytes: limit)
        }
    }

    // MARK: Checked arithmetic (nil propagates)

    public static func multiply(_ a: Int?, _ b: Int?) -> Int? {
        guard let a, let b else { return nil }
        let (r, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : r
    }

    public static func add(_ values: Int?...) -> Int? {
        var sum = 0
        for value in values {
            guard let value else { return nil }
            let (r, overflow) = sum.addingReportingOverflow(value)
            if overflow { return nil }
            sum = r
        }
        return sum
    }

    /// "1.5 GiB", "12.0 TiB": binary units, one decimal.
    public static func format(bytes: Int) -> String {
        var value = Double(bytes)
        for unit in ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"] {
            if value < 1024 || unit == "PiB" {
                return unit == "bytes" ? "\(bytes) bytes" : String(format: "%.1f", value) + " " + unit
            }
            value /= 1024
        }
        return "\(bytes) bytes"
    }
}

/// A run that needs more memory than the machine has.
public enum MemoryBudgetError: Error, Equatable, CustomStringConvertible {
    /// `neededBytes` nil: the count overflows 64 bits.
    case exceeds(what: String, neededBytes: Int?, limitBytes: Int)

    public var description: String {
        switch self {
        case let .exceeds(what, needed, limit):
            let amount = needed.map { "about \(MemoryBudget.format(bytes: $0))" } ?? "more than 2^63 bytes"
            return "\(what) needs \(amount) of memory, more than this machine's \(MemoryBudget.format(bytes: limit)) of physical memory; use smaller values"
        }
    }
}
