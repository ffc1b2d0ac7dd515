// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
  name: "swift-virtual-tasks",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "VirtualTasks", targets: ["VirtualTasks"]),
    .library(name: "VirtualTasksWasm", targets: ["VirtualTasksWasm"]),
    .executable(name: "vtasks", targets: ["vtasks"]),
    .executable(name: "vtasks-soak", targets: ["vtasks-soak"]),
    // Ecosystem adapters, each its own product so the core stays light.
    .library(name: "VirtualTasksMetrics", targets: ["VirtualTasksMetrics"]),
    .library(name: "VirtualTasksServiceLifecycle", targets: ["VirtualTasksServiceLifecycle"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    // `make docs` (swift package generate-documentation).
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
  ],
  targets: [
    // Thin C wrappers over the kernel calls Swift cannot make cleanly.
    .target(
      name: "CShims",
      path: "CShims",
      cSettings: [.define("_GNU_SOURCE")]
    ),
    .target(
      name: "VirtualTasks",
      dependencies: ["CShims", .product(name: "Logging", package: "swift-log")],
      swiftSettings: strict
    ),
    .target(
      name: "VirtualTasksWasm",
      dependencies: [
        "VirtualTasks",
        .product(name: "WasmKit", package: "WasmKit"),
        .product(name: "WasmParser", package: "WasmKit"),
        .product(name: "WAT", package: "WasmKit"),
        .product(name: "WasmKitWASI", package: "WasmKit"),
        .product(name: "WASI", package: "WasmKit"),
      ],
      swiftSettings: strict
    ),
    .executableTarget(
      name: "vtasks",
      dependencies: [
        "VirtualTasks",
        "VirtualTasksWasm",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strict
    ),
    // Samples `metrics()` into swift-metrics gauges and counters.
    .target(
      name: "VirtualTasksMetrics",
      dependencies: ["VirtualTasks", .product(name: "CoreMetrics", package: "swift-metrics")],
      swiftSettings: strict
    ),
    // `ThreadPoolTaskManager` as a swift-service-lifecycle `Service`.
    .target(
      name: "VirtualTasksServiceLifecycle",
      dependencies: [
        "VirtualTasks", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strict
    ),
    .testTarget(
      name: "VirtualTasksEcosystemTests",
      dependencies: [
        "VirtualTasks", "VirtualTasksMetrics", "VirtualTasksServiceLifecycle", "CShims",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "InMemoryLogging", package: "swift-log"),
        .product(name: "MetricsTestKit", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strict
    ),
    // The reliability soak (issue 6): only the executor, no WasmKit, so valgrind can run it.
    .executableTarget(
      name: "vtasks-soak",
      dependencies: ["VirtualTasks", "CShims"],
      swiftSettings: strict
    ),
    .testTarget(
      name: "VirtualTasksTests",
      dependencies: ["VirtualTasks", "CShims"],
      resources: [.copy("Fixtures")],
      swiftSettings: strict
    ),
    .testTarget(
      name: "VirtualTasksWasmTests",
      dependencies: [
        "VirtualTasksWasm", "VirtualTasks",
        .product(name: "WAT", package: "WasmKit"),
        .product(name: "WasmKit", package: "WasmKit"),
        .product(name: "WasmKitWASI", package: "WasmKit"),
      ],
      swiftSettings: strict
    ),
  ]
)
