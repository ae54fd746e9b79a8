/// The summaries every timing in the project reports (benchmarks, progress lines, the
/// straggler watch): one definition, so that "median" means the same everywhere.
extension Collection where Element == Double {
    public var mean: Double? { isEmpty ? nil : reduce(0, +) / Double(count) }
    /// The upper median (the middle element of the sorted values).
    public var median: Double? { isEmpty ? nil : sorted()[count / 2] }
}
