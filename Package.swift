// swift-tools-version:6.0
import PackageDescription

// Whole-module and cross-module optimisation: the math core is generic over Float/Double
// (Double for tight gradient checks), and its hot loops must be specialised for Float in the
// modules that call it.
let optimized: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization", "-target-cpu", "haswell", "-Xcc", "-fno-math-errno"], .when(configuration: .release))]

let package = Package(
    name: "Recur",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "recur", targets: ["recur"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: C shims
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ",
                       providers: [.apt(["libzmq3-dev"])]),
        // protoc-c output for proto/recur.proto (scripts/gen-proto); links libprotobuf-c.
        .target(name: "CWire", path: "Sources/CWire",
                linkerSettings: [.linkedLibrary("protobuf-c")]),

        // Row-wise products with pre-packed weights (AVX-512 / AVX2 / portable, chosen at run time).
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off"])]),

        // MARK: Modules
        .target(name: "Recurrent", dependencies: ["CBLAS", "CKernels"], exclude: ["README.md"], swiftSettings: optimized),
        .target(name: "Training", dependencies: ["Recurrent"], exclude: ["README.md"], swiftSettings: optimized),
        .target(name: "Wire", dependencies: ["CWire", "Recurrent"], exclude: ["README.md"], swiftSettings: optimized),
        .target(name: "Cluster", dependencies: ["CZeroMQ", "Wire", "Training", "Recurrent"],
                exclude: ["Transport/README.md", "Messaging/README.md", "Roles/README.md"], swiftSettings: optimized),

        // MARK: Executable
        .executableTarget(name: "recur", dependencies: [
            "Recurrent", "Training", "Cluster",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimized),

        // MARK: Fuzzing (scripts/fuzz; Tests/Fuzz/corpus)
        // LLVMFuzzerRunDriver, weakly: present only when scripts/fuzz links libFuzzer in.
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .target(name: "FuzzTargets", dependencies: ["Wire", "Training", "Recurrent", "Cluster"], exclude: ["README.md"]),
        .executableTarget(name: "recur-fuzz", dependencies: ["FuzzTargets", "CFuzzDriver"]),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["Recurrent", "Training"]),
        .testTarget(name: "RecurrentTests", dependencies: ["Recurrent", "CKernels", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Recurrent", "TestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "CWire", "Recurrent", "TestSupport"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Wire", "Training", "Recurrent", "TestSupport"]),
        .testTarget(name: "RecurCLITests", dependencies: ["TestSupport", "Training"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets"]),
    ],
    swiftLanguageModes: [.v5]
)
