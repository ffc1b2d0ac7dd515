/// `vtasks bench`: builds and runs the benchmark package (`Benchmarks/`, executable
/// `vtasks-bench`) in release mode and prints its table, or with `--json` its results as JSON.
///
/// The benchmark package is a separate SwiftPM package (SwiftNIO and package-benchmark never
/// reach the library's users), so this command drives it with `swift build`, as `make bench`
/// does. The build log goes to standard error; the table (or the JSON) to standard output.
import ArgumentParser
import Foundation

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract:
      "Build and run the benchmarks (W1..W8 against SwiftNIO, Dispatch, Swift's executor; WA1, WA2 against WasmKit's WASIThreads).",
    discussion: """
      Runs `swift build -c release` on the benchmark package, then its `vtasks-bench` \
      executable, which prints the table (medians of --runs runs, ratios to this library) and \
      writes results/<name>.md and results/<name>.json in the benchmark package. The first \
      build takes several minutes; a full run takes minutes too (--quick: well under one). \
      Arguments after `--` go to vtasks-bench unchanged.

      Examples:
        vtasks bench --quick               # reduced sizes, results/quick.*
        vtasks bench --only W4,W6 --runs 5 # two workloads, five runs per cell
        vtasks bench --quick --json | jq . # the results as JSON on stdout
        vtasks bench --package-path ~/src/swift-virtual-tasks/Benchmarks
        vtasks bench -- --help             # vtasks-bench's own options
      """
  )

  @Flag(help: "Reduced problem sizes (results/quick.*).")
  var quick = false

  @Option(help: "Runs per cell; the median is reported with min..max.")
  var runs: Int?

  @Option(help: "Only these workloads, comma separated (W1..W8, WA1, WA2).")
  var only: String?

  @Flag(name: .customLong("no-write"), help: "Print the table only; write no results files.")
  var noWrite = false

  @Flag(help: "Print the results as one JSON object (the table and the build log go to stderr).")
  var json = false

  @Option(
    name: .customLong("package-path"),
    help: "The benchmark package (default: Benchmarks/ here or in a parent directory).")
  var packagePath: String?

  @Argument(parsing: .postTerminator, help: "Passed to vtasks-bench after `--`.")
  var passthrough: [String] = []

  func validate() throws {
    if let runs, runs < 1 { throw ValidationError("--runs must be at least 1.") }
    if json && noWrite { throw ValidationError("--json reads the results file: drop --no-write.") }
    if let only, only.split(separator: ",").isEmpty {
      throw ValidationError("--only needs workload ids, e.g. W1,W5.")
    }
  }

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  func run() throws {
    let package = try locatePackage()
    let root = package.deletingLastPathComponent()
    FileHandle.standardError.write(
      Data("vtasks: building \(package.path) (release; the first build takes minutes)\n".utf8))
    let build = try Self.run(
      "swift", ["build", "-c", "release", "--package-path", package.path, "--product", "vtasks-bench"],
      stdout: FileHandle.standardError)
    if build != 0 { throw Failure(description: "building the benchmarks failed (swift build exit status \(build))") }
    let binPath = try Self.capture(
      "swift", ["build", "-c", "release", "--package-path", package.path, "--show-bin-path"])

    let out = package.appendingPathComponent("results").path
    let name = quick ? "quick" : "latest"
    var arguments: [String] = []
    if quick { arguments.append("--quick") }
    if let runs { arguments += ["--runs", "\(runs)"] }
    if let only { arguments += ["--only", only] }
    if noWrite { arguments.append("--no-write") }
    if json { arguments += ["--out", out, "--name", name] }
    let described = (try? Self.capture("git", ["-C", root.path, "describe", "--always", "--dirty"])) ?? "unknown"
    arguments += ["--note", "library at \(described) (vtasks bench)"]
    arguments += passthrough

    let status = try Self.run(
      URL(fileURLWithPath: binPath).appendingPathComponent("vtasks-bench").path, arguments,
      stdout: json ? FileHandle.standardError : FileHandle.standardOutput, lookUp: false)
    if status != 0 { throw Failure(description: "vtasks-bench exited with status \(status)") }
    if json {
      let file = URL(fileURLWithPath: out).appendingPathComponent("\(name).json")
      guard let data = FileManager.default.contents(atPath: file.path) else {
        throw Failure(description: "vtasks-bench wrote no \(file.path)")
      }
      FileHandle.standardOutput.write(data)
      if data.last != UInt8(ascii: "\n") { FileHandle.standardOutput.write(Data("\n".utf8)) }
    }
  }

  /// The benchmark package directory: --package-path, or `Benchmarks/` with a Package.swift in
  /// the current directory or an ancestor, or in an ancestor of this executable (a build folder
  /// inside the repository).
  func locatePackage() throws -> URL {
    let fileManager = FileManager.default
    func isPackage(_ url: URL) -> Bool {
      fileManager.fileExists(atPath: url.appendingPathComponent("Package.swift").path)
    }
    if let packagePath {
      let url = URL(fileURLWithPath: packagePath).standardizedFileURL
      guard isPackage(url) else {
        throw Failure(description: "\(packagePath): no Package.swift there (expected the benchmark package)")
      }
      return url
    }
    let starts = [
      URL(fileURLWithPath: fileManager.currentDirectoryPath),
      URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent(),
    ]
    for start in starts {
      var directory = start.standardizedFileURL
      while true {
        if directory.lastPathComponent == "Benchmarks" && isPackage(directory) { return directory }
        let candidate = directory.appendingPathComponent("Benchmarks")
        if isPackage(candidate) { return candidate }
        let parent = directory.deletingLastPathComponent()
        if parent.path == directory.path { break }
        directory = parent
      }
    }
    throw Failure(
      description:
        "no benchmark package found (Benchmarks/Package.swift in \(fileManager.currentDirectoryPath) or above); "
        + "run from the repository or pass --package-path")
  }

  /// Runs a command with inherited standard error; returns its exit status.
  static func run(
    _ command: String, _ arguments: [String], stdout: FileHandle, lookUp: Bool = true
  ) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: lookUp ? "/usr/bin/env" : command)
    process.arguments = lookUp ? [command] + arguments : arguments
    process.standardOutput = stdout
    do {
      try process.run()
    } catch {
      throw Failure(description: "cannot start \(command): \(error.localizedDescription)")
    }
    process.waitUntilExit()
    if lookUp && process.terminationStatus == 127 {
      throw Failure(description: "\(command) not found on PATH")
    }
    return process.terminationStatus
  }

  /// Runs a command and returns its standard output, trimmed; throws when it fails.
  static func capture(_ command: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [command] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw Failure(description: "\(command) \(arguments.joined(separator: " ")) failed")
    }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
