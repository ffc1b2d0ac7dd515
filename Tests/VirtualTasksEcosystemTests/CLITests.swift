/// The built `vtasks` on good and bad input: the exit status, the first line of output, and
/// that errors are one line on stderr with nothing on stdout.
import Foundation
import Testing

@Suite struct CLITests {
  /// The `vtasks` executable built next to this test bundle (same scratch path).
  static let vtasks: URL = {
    let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return me.deletingLastPathComponent().appendingPathComponent("vtasks")
  }()

  struct Run: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    var firstLine: String { stdout.split(separator: "\n").first.map(String.init) ?? "" }
    var errorLines: [Substring] { stderr.split(separator: "\n") }
  }

  func vtasks(_ arguments: [String], environment: [String: String] = [:]) async throws -> Run {
    try #require(
      FileManager.default.isExecutableFile(atPath: Self.vtasks.path),
      "build the vtasks product first (\(Self.vtasks.path))")
    let process = Process()
    process.executableURL = Self.vtasks
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    async let stdout = Task.detached { out.fileHandleForReading.readDataToEndOfFile() }.value
    async let stderr = Task.detached { err.fileHandleForReading.readDataToEndOfFile() }.value
    let (o, e) = await (stdout, stderr)
    await Task.detached { process.waitUntilExit() }.value
    return Run(
      status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
      stderr: String(decoding: e, as: UTF8.self))
  }

  /// A file in a fresh temporary directory.
  func temporaryFile(_ name: String, _ contents: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "vtasks-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let file = directory.appendingPathComponent(name)
    try contents.write(to: file, atomically: true, encoding: .utf8)
    return file.path
  }

  /// An error: the status, one line on stderr beginning `vtasks: error: `, nothing on stdout.
  func expectError(
    _ run: Run, status: Int32, containing text: String, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(run.status == status, "\(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.errorLines.count == 1, "\(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.stderr.hasPrefix("vtasks: error: "), "\(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.stderr.contains(text), "\(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.stdout.isEmpty, "\(run.stdout)", sourceLocation: sourceLocation)
  }

  // MARK: good input

  @Test func probeJSON_printsOneObject_withParallelism() async throws {
    let run = try await vtasks(["probe", "--json"])
    #expect(run.status == 0, "\(run.stderr)")
    let object = try JSONSerialization.jsonObject(with: Data(run.firstLine.utf8)) as? [String: Any]
    #expect(object?["parallelism"] is Int)
    #expect(run.stdout.split(separator: "\n").count == 1)
  }

  @Test func probeText_firstLineIsTheAffinity() async throws {
    let run = try await vtasks(["probe"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.firstLine.hasPrefix("affinity: "))
  }

  @Test(arguments: [[], ["probe"], ["run"], ["bench"]])
  func help_onEverySubcommand_showsExamples(_ subcommand: [String]) async throws {
    let run = try await vtasks(subcommand + ["--help"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.firstLine.hasPrefix("OVERVIEW: "))
    #expect(run.stdout.contains("Examples:"))
    #expect(run.stderr.isEmpty)
  }

  @Test func runJSON_lastLineIsTheOutcome_afterTheProgramsOutput() async throws {
    let run = try await vtasks(["run", "--json"])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.firstLine.hasPrefix("sum of "), "the program's own output comes first")
    let last = try #require(run.stdout.split(separator: "\n").last)
    let object = try #require(
      try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
    #expect(object["outcome"] as? String == "exited")
    #expect(object["exitCode"] as? Int == 0)
    #expect((object["guestThreadsSpawned"] as? Int ?? 0) > 0)
    #expect(run.stderr.isEmpty, "no progress line when stderr is not a terminal")
  }

  @Test func runJSON_onATrap_saysWhichThread_andExits134() async throws {
    let file = try temporaryFile(
      "trap.wat",
      """
      (module
        (import "env" "memory" (memory 1 1 shared))
        (func (export "wasi_thread_start") (param i32 i32))
        (func (export "_start") unreachable))
      """)
    let run = try await vtasks(["run", "--json", file])
    #expect(run.status == 134)
    let object = try JSONSerialization.jsonObject(with: Data(run.firstLine.utf8)) as? [String: Any]
    #expect(object?["outcome"] as? String == "trapped")
    #expect(object?["trappedThread"] as? Int == 0)
    #expect(run.errorLines.count == 1 && run.stderr.contains("trapped"))
  }

  @Test func progressLine_whenForced_goesToStderr_andStdoutStaysClean() async throws {
    // About a second and a half of guest work; VTASKS_PROGRESS=1 draws without a terminal.
    let file = try temporaryFile(
      "spin.wat",
      """
      (module
        (import "env" "memory" (memory 1 1 shared))
        (func (export "wasi_thread_start") (param i32 i32))
        (func (export "_start") (local i32)
          (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
            (br_if 0 (i32.lt_u (local.get 0) (i32.const 12000000))))))
      """)
    let run = try await vtasks(["run", "--json", file], environment: ["VTASKS_PROGRESS": "1"])
    #expect(run.status == 0, "\(run.stderr)")
    let object = try JSONSerialization.jsonObject(with: Data(run.firstLine.utf8)) as? [String: Any]
    let elapsed = try #require(object?["elapsedMilliseconds"] as? Double)
    if elapsed > 1300 {
      #expect(run.stderr.contains("vtasks: running \(file) for "), "\(run.stderr)")
      #expect(run.stderr.hasSuffix("\r\u{1B}[2K"), "the line is erased at the end")
    }
    #expect(!run.stdout.contains("vtasks: running"))
  }

  // MARK: bad input

  @Test func unknownOption_isOneLine_exit64() async throws {
    expectError(try await vtasks(["probe", "--bogus"]), status: 64, containing: "'--bogus'")
  }

  @Test func unknownSubcommand_isOneLine_exit64() async throws {
    expectError(try await vtasks(["frobnicate"]), status: 64, containing: "'frobnicate'")
  }

  @Test func invalidOptionValue_isOneLine_exit64() async throws {
    expectError(
      try await vtasks(["run", "--max-threads", "0"]), status: 64, containing: "--max-threads")
    expectError(try await vtasks(["bench", "--runs", "zero"]), status: 64, containing: "--runs")
    expectError(try await vtasks(["bench", "--json", "--no-write"]), status: 64, containing: "--json")
  }

  @Test func missingFile_isOneLine_exit1() async throws {
    expectError(
      try await vtasks(["run", "/nonexistent/program.wasm"]), status: 1,
      containing: "/nonexistent/program.wasm: no such file")
  }

  @Test func directoryAsFile_isOneLine_exit1() async throws {
    let directory = FileManager.default.temporaryDirectory.path
    expectError(try await vtasks(["run", directory]), status: 1, containing: "is a directory")
  }

  @Test func invalidBinaryModule_isOneLine_exit1() async throws {
    let file = try temporaryFile("bad.wasm", "this is not wasm")
    expectError(try await vtasks(["run", file]), status: 1, containing: "invalid module")
  }

  @Test func invalidTextModule_isOneLine_exit1() async throws {
    let file = try temporaryFile("bad.wat", "(module (func")
    expectError(try await vtasks(["run", file]), status: 1, containing: "bad.wat: ")
  }

  @Test func benchWithoutAPackage_isOneLine_exit1() async throws {
    expectError(
      try await vtasks(["bench", "--package-path", "/nonexistent"]), status: 1,
      containing: "no Package.swift")
  }
}
