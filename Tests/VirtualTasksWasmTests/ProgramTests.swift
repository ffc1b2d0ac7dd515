/// Whole programs: `WasiThreadsProgram` in this process (how the outcome is decided), and the
/// `vtasks run` command in a child process (output and exit status).
import Foundation
import Testing
import VirtualTasks
import VirtualTasksWasm
import WAT
import WasmKit
import WasmKitWASI

@Suite struct WasiThreadsProgramTests {
  let engine = WasmThreads.makeEngine()

  /// Runs `Fixtures.program` in `mode` until its outcome is decided, then releases whatever
  /// still waits and waits for every guest thread to end.
  func run(mode: Int32) async throws -> (WasiThreadsProgram.Outcome, [Int32: GuestThreadOutcome]) {
    try await withManager { manager in try await run(mode: mode, on: manager) }
  }

  func run(
    mode: Int32, on manager: ThreadPoolTaskManager
  ) async throws -> (WasiThreadsProgram.Outcome, [Int32: GuestThreadOutcome]) {
    let wasi = try WASIBridgeToHost(args: ["program"], environment: [:], preopens: [])
    defer { try? wasi.close() }
    let exits = Recorder<(Int32, GuestThreadOutcome)>()
    let program = try WasiThreadsProgram(
      manager: manager, module: try WasmThreads.parseModule(wat: Fixtures.program),
      engine: engine, maxThreads: 4,
      imports: { store in
        var imports = Imports()
        wasi.link(to: &imports, store: store)
        return imports
      },
      onThreadExit: { exits.append(($0, $1)) })
    storeI32(program.threads.sharedMemory, engine: engine, at: 12, mode)

    let outcome = try await within("the outcome") { try? await program.run() }
    try wake(program.threads.sharedMemory)
    try await within("every guest thread") { await program.threads.idle() }
    return (try #require(outcome), Dictionary(uniqueKeysWithValues: exits.all.map { ($0.0, $0.1) }))
  }

  /// Sets the release flag and wakes every waiter, through a host instance of `Fixtures.waker`.
  func wake(_ shared: SharedMemory) throws {
    let store = Store(engine: engine)
    let instance = try WasmThreads.parseModule(wat: Fixtures.waker).instantiate(
      store: store, imports: ["env": ["memory": Memory(store: store, sharedMemory: shared)]])
    _ = try instance.exports[function: "wake"]!()
  }

  @Test func aTrapInAnyThread_decidesTheOutcome() async throws {
    let (outcome, exits) = try await run(mode: 1)
    guard case .trapped(let thread, let message) = outcome else {
      Issue.record("expected a trap, got \(outcome)")
      return
    }
    #expect(thread == 1)
    #expect(message.contains("unreachable"))
    #expect(exits[0] == .returned, "the main thread went on until released")
  }

  @Test func procExitInAnyThread_decidesTheExitCode() async throws {
    let (outcome, exits) = try await run(mode: 2)
    #expect(outcome == .exited(code: 7))
    #expect(exits[1] == .exited(code: 7))
  }

  @Test func startReturning_endsTheProgramWhileThreadsStillRun() async throws {
    let (outcome, exits) = try await run(mode: 3)
    #expect(outcome == .exited(code: 0))
    #expect(exits[1] == .returned, "the thread ended only when released, after the outcome")
  }
}

@Suite struct RunCommandTests {
  /// The `vtasks` executable built next to this test bundle.
  static let vtasks: URL = {
    let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return me.deletingLastPathComponent().appendingPathComponent("vtasks")
  }()

  struct Run: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
  }

  func vtasks(_ arguments: [String]) async throws -> Run {
    try #require(
      FileManager.default.isExecutableFile(atPath: Self.vtasks.path),
      "build the vtasks product first (\(Self.vtasks.path))")
    let process = Process()
    process.executableURL = Self.vtasks
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let exited = AsyncStream<Int32>.makeStream()
    process.terminationHandler = { exited.1.yield($0.terminationStatus) }
    try process.run()
    // Read while it runs so a full pipe cannot stall it.
    async let stdout = Task.detached { out.fileHandleForReading.readDataToEndOfFile() }.value
    async let stderr = Task.detached { err.fileHandleForReading.readDataToEndOfFile() }.value
    let status: Int32? = try await within("vtasks \(arguments)") {
      for await status in exited.0 { return status }
      return nil
    }
    return Run(
      status: try #require(status), stdout: String(decoding: await stdout, as: UTF8.self),
      stderr: String(decoding: await stderr, as: UTF8.self))
  }

  func fixture(_ text: String, name: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "vtasks-wasm-tests-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let file = directory.appendingPathComponent(name)
    if name.hasSuffix(".wasm") {
      try Data(try wat2wasm(text, features: WasmThreads.features)).write(to: file)
    } else {
      try text.write(to: file, atomically: true, encoding: .utf8)
    }
    return file.path
  }

  @Test func theEmbeddedExample_printsTheSumAndTiming() async throws {
    let run = try await vtasks(["run"])
    #expect(run.status == 0, "\(run.stderr)")
    let lines = run.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(lines.first.map { "\($0)\n" } == ExampleProgram.expectedOutput)
    #expect(lines.count > 1 && lines[1].hasPrefix("ran in "))
  }

  @Test func startReturning_exitsWithZero_whileAThreadStillSpins() async throws {
    let run = try await vtasks(["run", try fixture(Fixtures.mainReturnsWhileThreadSpins, name: "main.wat")])
    #expect(run.status == 0)
  }

  @Test func procExitInAWorker_exitsWithItsCode() async throws {
    let run = try await vtasks(["run", try fixture(Fixtures.workerExitsWhileMainSpins, name: "exit.wasm")])
    #expect(run.status == 7)
  }

  @Test func aTrapInAWorker_endsTheProgramWithAOneLineMessage() async throws {
    let run = try await vtasks(["run", try fixture(Fixtures.workerTrapsWhileMainSpins, name: "trap.wat")])
    #expect(run.status == 134)
    #expect(run.stderr.contains("guest thread 1 trapped"))
    #expect(run.stderr.contains("unreachable"))
    #expect(run.stderr.split(separator: "\n").count == 1)
  }

  @Test func maxThreads_countsTheMainThread() async throws {
    let file = try fixture(Fixtures.spawnOnce, name: "once.wat")
    #expect(try await vtasks(["run", "--max-threads", "1", file]).status == 3)
    #expect(try await vtasks(["run", "--max-threads", "2", file]).status == 0)
  }

  @Test func aMissingFile_isOneReadableLine() async throws {
    let run = try await vtasks(["run", "/nonexistent/program.wasm"])
    #expect(run.status == 1)
    #expect(run.stderr.hasPrefix("vtasks: error: "))
    #expect(run.stderr.split(separator: "\n").count == 1)
  }
}
