import Foundation
import Recurrent

/// `RECUR_KERNEL_LEVEL=portable|avx2|avx512`: forces the level of the Float kernels (all give
/// the same bits; for testing mixed fleets and measuring a path). Read here only, once at start,
/// before any thread runs; worker processes started by `recur train --workers` inherit it.
enum KernelLevelSetting {
    static let variable = "RECUR_KERNEL_LEVEL"

    /// Forces the level the environment names; returns the error line when the value is not a
    /// level or needs instructions the CPU lacks. Unset or empty: the CPU's best.
    static func apply(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let value = environment[variable], !value.isEmpty else { return nil }
        guard let level = KernelLevel(name: value) else {
            return "\(variable) must be one of \(KernelLevel.allCases.map(\.description).joined(separator: ", ")), got \(value)"
        }
        do {
            try KernelLevel.force(level)
        } catch {
            return "\(variable)=\(value): \(error)"
        }
        return nil
    }
}
