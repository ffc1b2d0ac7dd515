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
      when _start returns, n on proc_exit(n) from any thread, 134 when a guest thread traps.
      """
  )

  @Option(
    name: .customLong("max-threads"),
    help: "Live guest threads at most, the main thread included; spawns past it fail at once.")
  var maxThreads = 64

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

    let outcome: WasiThreadsProgram.Outcome
    do {
      outcome = try await program.run()
    } catch {
      fail("\(file ?? "example"): \(readable(error))")
    }

    switch outcome {
    case .exited(let code):
      if file == nil {
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

  private func loadModule() throws -> Module {
    guard let file else { return try WasmThreads.parseModule(wat: ExampleProgram.wat) }
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
