// swift-tools-version:6.1
// The benchmark package: peers (SwiftNIO) and package-benchmark stay here, never in the library's
// dependency graph. `make bench` / `make bench-quick` run `vtasks-bench`; `make bench-check` runs
// the allocation budgets in `Benchmarks/Allocations` against `Thresholds/`.
import PackageDescription

let package = Package(
  name: "swift-virtual-tasks-benchmarks",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "vtasks-bench", targets: ["VTasksBench"])
  ],
  dependencies: [
    .package(name: "swift-virtual-tasks", path: "../"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    // WA1, WA2: WasmKit's own `WASIThreads` as the peer of `GuestThreadGroup` (the version the
    // library pins).
    .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2"),
    .package(
      url: "https://github.com/ordo-one/benchmark", from: "1.38.1",
      traits: ["MallocInterposer"]),
  ],
  targets: [
    // The floors and the process probes, in C: an absolute timerfd loop (1 ns slack), RSS,
    // peak-RSS reset, malloc_trim, CPU time.
    .target(
      name: "CBenchSupport",
      cSettings: [.define("_GNU_SOURCE")]
    ),
    .executableTarget(
      name: "VTasksBench",
      dependencies: [
        "CBenchSupport",
        .product(name: "VirtualTasks", package: "swift-virtual-tasks"),
        .product(name: "VirtualTasksWasm", package: "swift-virtual-tasks"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "WasmKit", package: "WasmKit"),
        .product(name: "WAT", package: "WasmKit"),
        .product(name: "WasmKitWASIThreads", package: "WasmKit"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Allocation budgets (package-benchmark, malloc interposer): `swift package benchmark`.
    .executableTarget(
      name: "Allocations",
      dependencies: [
        .product(name: "VirtualTasks", package: "swift-virtual-tasks"),
        .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/Allocations",
      swiftSettings: [.swiftLanguageMode(.v6)],
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
  ]
)
