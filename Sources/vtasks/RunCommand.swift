/// `vtasks run [FILE]`: runs a wasm32-wasi-threads program on a `ThreadPoolTaskManager`, or the
/// embedded example (``ExampleProgram``) when no FILE is given.
///
/// WASI preview 1 comes from WasmKitWASI, `wasi.thread-spawn` from `GuestThreadGroup`. The
/// library reports how the program ended; this command decides to end the process: with 0 when
/// `_start` returns (even while guest threads still run), with n on `proc_exit(n)` from any
/// thread, with 134 (128 + SIGABRT, as wasmtime does) and a one-line message on a trap in any
/// thread. Runs on the main task; the guest threads run on the manager's blocking pool.
import ArgumentParser
import Foundation
import VirtualTasks
import VirtualTasksWasm
import WasmKit
import WasmKitWASI

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run a wasm32-wasi-threads program on the pools.",
    discussion: """
      FILE is a .wasm binary or a .wat text module exporting _start and importing one shared \
      memory. Without FILE, an embedded example sums numbers on guest threads. Exit status: 0 \
      when _start returns, n on proc_exit(n) from any thread, 134 when a guest thread traps, \
      1 (with one line on stderr) when FILE cannot be read or is not a valid module.

      Examples:
        vtasks run                         # the embedded example and a summary
        vtasks run program.wasm -v -n 3    # arguments after FILE go to the program
        vtasks run --max-threads 8 a.wat   # at most 8 live guest threads
        vtasks run --json a.wasm | tail -1 # the outcome as JSON, after its output
      """
  )

  @Option(
    name: .customLong("max-threads"),
    help: "Live guest threads at most, the main thread included; spawns past it fail at once.")
  var maxThreads = 64

  @Flag(
    help: "After the program's own output, print the outcome as one JSON object (on stdout).")
  var json = false

  @Argument(help: "The program (.wasm or .wat); the embedded example when absent.")
  var file: String?

  @Argument(parsing: .captureForPassthrough, help: "Arguments passed to the program.")
  var arguments: [String] = []

  func validate() throws {
    if maxThreads < 1 {
      throw ValidationError("--max-threads must be at least 1 (it counts the main thread).")
    }
  }

  func run() async throws {
    let started = ContinuousClock.now
    let module: Module
    do {
      module = try loadModule()
    } catch {
      fail("\(file ?? "example"): \(readable(error))")
    }
    let engine = WasmThreads.makeEngine()
    let manager: ThreadPoolTaskManager
    let wasi: WASIBridgeToHost
    let program: WasiThreadsProgram
    do {
      manager = try ThreadPoolTaskManager()
      wasi = try WASIBridgeToHost(args: [file ?? "example"] + arguments, environment: [:], preopens: [])
      program = try WasiThreadsProgram(
        manager: manager, module: module, engine: engine, maxThreads: maxThreads,
        imports: { store in
          var imports = Imports()
          wasi.link(to: &imports, store: store)
          return imports
        })
    } catch {
      fail("\(file ?? "example"): \(readable(error))")
    }

    let name = file ?? "example"
    let progress = ProgressLine { [program, manager] elapsed in
      "vtasks: running \(name) for \(Terminal.seconds(elapsed)); guest threads spawned: "
        + "\(program.threads.spawnedThreadCount), blocking threads busy: "
        + "\(manager.metrics().blockingThreadsBusy)"
    }
    let outcome: WasiThreadsProgram.Outcome
    do {
      outcome = try await program.run()
    } catch {
      progress.stop()
      fail("\(file ?? "example"): \(readable(error))")
    }
    progress.stop()
    if json {
      printJSON(
        outcome: outcome, elapsed: ContinuousClock.now - started, spawned: program.threads.spawnedThreadCount,
        metrics: manager.metrics())
    }

    switch outcome {
    case .exited(let code):
      if file == nil && !json {
        let elapsed = ContinuousClock.now - started
        let metrics = manager.metrics()
        let milliseconds =
          Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1e3
        print(
          "ran in \(String(format: "%.1f", milliseconds)) ms: \(program.threads.spawnedThreadCount) guest threads "
            + "spawned (at most \(maxThreads) live, main included) on \(metrics.blockingThreads) "
            + "blocking-pool threads; \(metrics.workerThreads) workers")
      }
      end(Int32(truncatingIfNeeded: code))
    case .trapped:
      report("\(file ?? "example"): \(outcome)")
      end(134)
    }
  }

  /// The outcome as one JSON object on standard output.
  private func printJSON(
    outcome: WasiThreadsProgram.Outcome, elapsed: Duration, spawned: Int,
    metrics: ThreadPoolTaskManager.Metrics
  ) {
    struct Summary: Encodable {
      var file: String?
      var outcome: String
      var exitCode: Int32
      var trappedThread: Int32?
      var trapMessage: String?
      var elapsedMilliseconds: Double
      var guestThreadsSpawned: Int
      var maxThreads: Int
      var workerThreads: Int
      var blockingThreads: Int
      var completedBlockingJobs: Int
    }
    var summary = Summary(
      file: file, outcome: "exited", exitCode: 0, elapsedMilliseconds: 0,
      guestThreadsSpawned: spawned, maxThreads: maxThreads, workerThreads: metrics.workerThreads,
      blockingThreads: metrics.blockingThreads, completedBlockingJobs: metrics.completedBlockingJobs)
    let (seconds, attoseconds) = elapsed.components
    summary.elapsedMilliseconds = ((Double(seconds) * 1e3 + Double(attoseconds) / 1e15) * 10).rounded() / 10
    switch outcome {
    case .exited(let code):
      summary.exitCode = Int32(truncatingIfNeeded: code)
    case .trapped(let thread, let message):
      summary.outcome = "trapped"
      summary.exitCode = 134
      summary.trappedThread = thread
      summary.trapMessage = message
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if let data = try? encoder.encode(summary) {
      print(String(decoding: data, as: UTF8.self))
    }
  }

  /// A file that cannot be read, said plainly.
  struct FileProblem: LocalizedError {
    var errorDescription: String?
  }

  private func loadModule() throws -> Module {
    guard let file else { return try WasmThreads.parseModule(wat: ExampleProgram.wat) }
    var isDirectory: ObjCBool = false
    if !FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) {
      throw FileProblem(errorDescription: "no such file")
    }
    if isDirectory.boolValue { throw FileProblem(errorDescription: "is a directory, not a module") }
    if !FileManager.default.isReadableFile(atPath: file) {
      throw FileProblem(errorDescription: "not readable (permission denied)")
    }
    if file.hasSuffix(".wat") {
      return try WasmThreads.parseModule(wat: try String(contentsOfFile: file, encoding: .utf8))
    }
    let data = try Data(contentsOf: URL(fileURLWithPath: file))
    return try WasmThreads.parseModule(wasm: [UInt8](data))
  }
}

/// Prints one line to standard error.
private func report(_ message: String) {
  FileHandle.standardError.write(Data("vtasks: \(message)\n".utf8))
}

/// One readable line, exit status 1.
private func fail(_ message: String) -> Never {
  report("error: \(message.split(separator: "\n").joined(separator: " "))")
  end(1)
}

/// A readable description: ours as they are, Foundation's without their dictionary dumps.
private func readable(_ error: any Error) -> String {
  error is WasiThreadError ? "\(error)" : error.localizedDescription
}

/// Ends the process now: guest threads may still be running, and the program has ended.
private func end(_ code: Int32) -> Never {
  fflush(nil)
  exit(code)
}
