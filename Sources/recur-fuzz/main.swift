// recur-fuzz: runs the decoders' fuzz targets (FuzzTargets) with our seeded mutator, or with
// libFuzzer when scripts/fuzz linked it in. Usage:
//
//   recur-fuzz list
//   recur-fuzz run TARGET SECONDS [CORPUS_DIR] [SEED]    own mutator; exit 1 on a finding
//   recur-fuzz libfuzzer TARGET [libFuzzer flags and corpus dirs…]
//   recur-fuzz seeds DIR                                   write every target's seeds to DIR/TARGET/
//
// A finding (untyped error, broken invariant) or a trap saves the input as
// crash-TARGET-<n>.bin in the current directory.
import CFuzzDriver
import Foundation
import FuzzTargets

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("recur-fuzz: \(message)\n".utf8))
    exit(2)
}

/// Inputs of a corpus directory (every regular file), sorted by name.
func corpusFiles(_ directory: String) -> [[UInt8]] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    return names.sorted().compactMap { name in
        (try? Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name))).map { Array($0) }
    }
}

func save(_ input: [UInt8], target: String) -> String {
    var n = 0
    while FileManager.default.fileExists(atPath: "crash-\(target)-\(n).bin") { n += 1 }
    let path = "crash-\(target)-\(n).bin"
    _ = FileManager.default.createFile(atPath: path, contents: Data(input))
    return path
}

// MARK: Crash capture for the mutator (a trap ends the process; the input must survive it)

nonisolated(unsafe) var pendingInput = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
nonisolated(unsafe) var pendingLength = 0
nonisolated(unsafe) var pendingPath: UnsafeMutablePointer<CChar>? = nil

func installCrashCapture(target: String) {
    pendingPath = strdup("crash-\(target)-trap.bin")
    for signal in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE] {
        Foundation.signal(signal) { number in
            // Async-signal-safe only: open, write, close, then die of the same signal.
            let fd = open(pendingPath!, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd >= 0 {
                _ = write(fd, pendingInput.baseAddress!, pendingLength)
                close(fd)
            }
            Foundation.signal(number, SIG_DFL)
            raise(number)
        }
    }
}

// MARK: libFuzzer

nonisolated(unsafe) var libFuzzerTarget: FuzzTarget? = nil

let testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { data, size in
    let input = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    if case .finding(let message) = libFuzzerTarget!.run(input) {
        FileHandle.standardError.write(Data("recur-fuzz: finding in \(libFuzzerTarget!.name): \(message)\n".utf8))
        abort()   // libFuzzer saves the input as a crash
    }
    return 0
}

// MARK: Commands

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: recur-fuzz list | run TARGET SECONDS [CORPUS_DIR] [SEED] | libfuzzer TARGET [flags…] | seeds DIR") }
func target(_ name: String?) -> FuzzTarget {
    guard let name, let target = FuzzTargets.named(name) else {
        fail("unknown target \(name ?? "(none)"); targets: \(FuzzTargets.all.map(\.name).joined(separator: " "))")
    }
    return target
}

switch command {
case "list":
    for target in FuzzTargets.all { print(target.name) }

case "seeds":
    guard arguments.count == 2 else { fail("usage: recur-fuzz seeds DIR") }
    for target in FuzzTargets.all {
        let directory = arguments[1] + "/" + target.name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (index, seed) in target.seeds().enumerated() {
            _ = FileManager.default.createFile(atPath: "\(directory)/seed-\(index)", contents: Data(seed))
        }
    }

case "run":
    guard arguments.count >= 3, let seconds = Double(arguments[2]), seconds >= 0 else {
        fail("usage: recur-fuzz run TARGET SECONDS [CORPUS_DIR] [SEED]")
    }
    let fuzzTarget = target(arguments[1])
    let extra = arguments.count >= 4 ? corpusFiles(arguments[3]) : []
    let seed = arguments.count >= 5 ? UInt64(arguments[4]) ?? 1 : UInt64(Date().timeIntervalSince1970)
    installCrashCapture(target: fuzzTarget.name)
    let result = Campaign.run(fuzzTarget, seed: seed, extraSeeds: extra, seconds: seconds) { input in
        pendingLength = min(input.count, pendingInput.count)
        input.withUnsafeBytes { pendingInput.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<pendingLength])) }
    }
    for finding in result.findings {
        print("finding in \(fuzzTarget.name): \(finding.message) (input saved as \(save(finding.input, target: fuzzTarget.name)))")
    }
    print("\(fuzzTarget.name): \(result.inputs) inputs in \(String(format: "%.1f", result.seconds)) s "
          + "(\(Int(result.inputsPerSecond))/s), \(result.decoded) decoded, \(result.rejected) rejected, "
          + "\(result.findings.count) findings, seed \(seed)")
    exit(result.findings.isEmpty ? 0 : 1)

case "libfuzzer":
    libFuzzerTarget = target(arguments.count >= 2 ? arguments[1] : nil)
    var argv: [UnsafeMutablePointer<CChar>?] = ([CommandLine.arguments[0]] + arguments.dropFirst(2)).map { strdup($0) } + [nil]
    var argc = Int32(argv.count - 1)
    let status = argv.withUnsafeMutableBufferPointer { buffer -> Int32 in
        var pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
        return recur_fuzz_run_driver(&argc, &pointer, testOneInput)
    }
    if status == -1 { fail("this build has no libFuzzer; build it with scripts/fuzz, or use `recur-fuzz run`") }
    exit(status)

default:
    fail("unknown command \(command)")
}
