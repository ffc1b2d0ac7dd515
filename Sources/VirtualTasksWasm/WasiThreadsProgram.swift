/// `WasiThreadsProgram`: a wasm32-wasi-threads command run on a manager, and the decision of how
/// the program as a whole ended, as users of wasi-threads runtimes expect it.
///
/// The first of these decides: `_start` returns (exit code 0, even while other guest threads
/// still run), any thread calls `proc_exit(n)` (exit code n), any thread traps (reported with the
/// thread and a one-line message). The program only reports; ending the process (or not) is the
/// caller's choice, as threads still running keep running. Any thread may call it; `runBlocking`
/// blocks its caller, `run` suspends.
import VirtualTasks
import WasmKit

public final class WasiThreadsProgram: Sendable {
  /// How the program ended.
  public enum Outcome: Sendable, Hashable, CustomStringConvertible {
    /// `_start` returned (0) or a thread called `proc_exit(code)`.
    case exited(code: UInt32)
    /// A guest thread trapped (``GuestThreadGroup/mainThreadID`` for the main thread).
    case trapped(thread: Int32, message: String)

    public var description: String {
      switch self {
      case .exited(let code): return "exited with code \(code)"
      case .trapped(let thread, let message):
        return thread == GuestThreadGroup.mainThreadID
          ? "the main thread trapped: \(message)" : "guest thread \(thread) trapped: \(message)"
      }
    }
  }

  /// The program's guest threads (its shared memory, joins, live count).
  public let threads: GuestThreadGroup
  private let outcome: OneShot<Outcome>

  /// Prepares the program. `imports` provides WASI preview 1 (and anything else) for every
  /// instance; `wasi.thread-spawn` comes from the group. `maxThreads` counts the main thread.
  /// `onThreadExit` sees every thread's end before the program's outcome is decided from it.
  public init(
    manager: some VirtualWasmTaskManager,
    module: Module,
    engine: Engine,
    maxThreads: Int = 64,
    imports: @escaping GuestThreadGroup.ImportsBuilder,
    onThreadExit: (@Sendable (_ thread: Int32, _ outcome: GuestThreadOutcome) -> Void)? = nil
  ) throws(WasiThreadError) {
    let outcome = OneShot<Outcome>()
    self.outcome = outcome
    self.threads = try GuestThreadGroup(
      manager: manager, module: module, engine: engine,
      configuration: .init(maxThreads: maxThreads), imports: imports,
      onExit: { thread, ended in
        onThreadExit?(thread, ended)
        switch ended {
        case .returned:
          if thread == GuestThreadGroup.mainThreadID { outcome.fulfil(.exited(code: 0)) }
        case .exited(let code):
          outcome.fulfil(.exited(code: code))
        case .trapped(let message):
          outcome.fulfil(.trapped(thread: thread, message: message))
        }
      })
  }

  /// Starts `_start` on a blocking-pool thread; setup failures are thrown here.
  public func start() throws(WasiThreadError) {
    try threads.startMain(entryPoint: .start)
  }

  /// The outcome, once decided.
  public var decided: Outcome? { outcome.current }

  /// Starts the program and suspends until its outcome is decided.
  public func run() async throws(WasiThreadError) -> Outcome {
    try start()
    return await outcome.value()
  }

  /// Starts the program and blocks the calling thread until its outcome is decided.
  public func runBlocking() throws(WasiThreadError) -> Outcome {
    try start()
    return outcome.wait()
  }
}
