/// The parallelism probe on the real kernel: the built `vtasks probe --json` under `taskset`, and
/// inside a freshly made cgroup v1 cpu cgroup with a quota (root only). Only the child process is
/// ever moved into a cgroup, never the test process.
import Foundation
import Testing

@testable import VirtualTasks

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

enum VTasksBinary {
  /// The `vtasks` executable of the build this test bundle belongs to (the same scratch path
  /// and configuration: the resource bundle sits in that build directory), or nil.
  static func locate() -> URL? {
    candidateDirectories.lazy.map { $0.appendingPathComponent("vtasks") }
      .first { FileManager.default.isExecutableFile(atPath: $0.path) }
  }

  static var candidateDirectories: [URL] {
    [
      Bundle.module.bundleURL.deletingLastPathComponent(),
      Bundle.main.bundleURL,
      Bundle.main.bundleURL.deletingLastPathComponent(),
      URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
    ]
  }

  /// The binary, or a visible skip saying where it was looked for.
  static func require() throws -> URL {
    if let binary = locate() { return binary }
    let places = candidateDirectories.map(\.path).joined(separator: ", ")
    try Test.cancel(
      "vtasks binary not found beside the test bundle (looked in \(places)); build the package first")
  }

  struct Output {
    var status: Int32
    var stdout: String
    var stderr: String
  }

  /// Runs `executable` with `arguments`, the environment minus the parallelism override.
  static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws
    -> Output
  {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env[Parallelism.overrideVariable] = nil
    env.merge(environment) { $1 }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Output(
      status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
      stderr: String(decoding: stderr, as: UTF8.self))
  }

  /// Decodes `probe --json` output, checking it is one object with an integer `parallelism`.
  static func decodeReport(_ output: Output, sourceLocation: SourceLocation = #_sourceLocation) throws
    -> ParallelismReport
  {
    try #require(
      output.status == 0, "exit \(output.status): \(output.stderr)", sourceLocation: sourceLocation)
    let data = Data(output.stdout.utf8)
    let object = try #require(
      try JSONSerialization.jsonObject(with: data) as? [String: Any], sourceLocation: sourceLocation)
    #expect(object["parallelism"] is Int, "parallelism is not an integer", sourceLocation: sourceLocation)
    return try JSONDecoder().decode(ParallelismReport.self, from: data)
  }

  static func which(_ tool: String) -> URL? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").lazy.map {
      URL(fileURLWithPath: String($0)).appendingPathComponent(tool)
    }
    .first { FileManager.default.isExecutableFile(atPath: $0.path) }
  }
}

/// A cgroup v1 cpu hierarchy this process may create child cgroups in.
enum RealCgroupV1 {
  static let mountPoint = "/sys/fs/cgroup/cpu"

  static var isUsable: Bool {
    getuid() == 0 && access(mountPoint + "/cgroup.procs", W_OK) == 0
      && access(mountPoint + "/cpu.cfs_quota_us", R_OK) == 0
  }

  static func write(_ value: String, to path: String) throws {
    try Data(value.utf8).write(to: URL(fileURLWithPath: path))
  }

  /// Removes an empty cgroup; the kernel may report EBUSY for a moment after its last task
  /// exited, so it retries briefly.
  static func remove(_ directory: String) {
    for _ in 0..<100 {
      if rmdir(directory) == 0 || errno == ENOENT { return }
      usleep(10_000)
    }
    Issue.record("could not remove test cgroup \(directory): errno \(errno)")
  }
}

@Suite("Parallelism probe on the real kernel")
struct ParallelismRealTests {
  @Test func vtasksProbeJSON_underTasksetOneCPU_reportsOne() throws {
    guard let taskset = VTasksBinary.which("taskset") else {
      try Test.cancel("taskset is not installed: cannot restrict the affinity of the probe")
    }
    let binary = try VTasksBinary.require()
    let report = try VTasksBinary.decodeReport(
      VTasksBinary.run(taskset, ["-c", "0", binary.path, "probe", "--json"]))
    #expect(report.parallelism == 1)
    #expect(report.affinityCount == 1)
    #expect(report.affinitySource == .schedGetaffinity)
  }

  @Test func vtasksProbeText_showsEveryDecision() throws {
    let binary = try VTasksBinary.require()
    let fixture = try ParallelismFixture.root("v1-docker")
    let output = try VTasksBinary.run(
      binary, ["probe", "--root", fixture], environment: [Parallelism.overrideVariable: "-3"])
    #expect(output.status == 0, "\(output.stderr)")
    let text = output.stdout
    for expected in [
      "affinity: ", "cgroup version: v1", "cgroup path: /docker/abc",
      "mount point: /sys/fs/cgroup/cpu,cpuacct (mount root /docker/abc)",
      #"cpu.cfs_quota_us = "150000", cpu.cfs_period_us = "100000""#,
      "quota: 150000/100000 us = 1.5 CPUs, ceil 2",
      #"override: VIRTUAL_TASKS_PARALLELISM="-3" ignored: not a positive integer"#,
      "parallelism: ",
    ] {
      #expect(text.contains(expected), "missing \"\(expected)\" in:\n\(text)")
    }
  }

  @Test func vtasksProbeJSON_validOverrideWins() throws {
    let binary = try VTasksBinary.require()
    let report = try VTasksBinary.decodeReport(
      VTasksBinary.run(binary, ["probe", "--json"], environment: [Parallelism.overrideVariable: "7"]))
    #expect(report.parallelism == 7)
    #expect(report.decidedBy == .override)
  }

  // Needs root and a writable v1 cpu hierarchy (this project's CI hosts); skipped elsewhere.
  @Test(
    .enabled(
      if: RealCgroupV1.isUsable, "needs root and a writable cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu"),
    arguments: [(50000, 1), (150000, 2)])
  func realV1CpuCgroup_quotaLimitsChildProbe(quota: Int, quotaCeiling: Int) throws {
    let binary = try VTasksBinary.require()
    let name = "vtasks-test-\(getpid())-\(quota)-\(UUID().uuidString.prefix(8))"
    let directory = RealCgroupV1.mountPoint + "/" + name
    try #require(mkdir(directory, 0o755) == 0, "mkdir \(directory): errno \(errno)")
    defer { RealCgroupV1.remove(directory) }
    try RealCgroupV1.write("100000", to: directory + "/cpu.cfs_period_us")
    try RealCgroupV1.write("\(quota)", to: directory + "/cpu.cfs_quota_us")

    // Only the child joins the cgroup: the shell moves itself, then becomes the probe.
    let output = try VTasksBinary.run(
      URL(fileURLWithPath: "/bin/sh"),
      ["-c", #"echo $$ > "$1/cgroup.procs" && exec "$2" probe --json"#, "sh", directory, binary.path])
    let report = try VTasksBinary.decodeReport(output)
    #expect(report.parallelism == min(report.affinityCount, quotaCeiling))
    #expect(report.decidedBy == (quotaCeiling < report.affinityCount ? .cgroupQuota : .affinity))
    let found = try #require(report.quota)
    #expect(found.quotaMicroseconds == quota && found.periodMicroseconds == 100000)
    #expect(found.directory.hasSuffix("/" + name))
  }
}
