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
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2"),
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
      dependencies: ["CShims"],
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
