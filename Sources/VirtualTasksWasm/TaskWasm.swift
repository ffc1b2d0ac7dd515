/// `TaskWasm`: one unit of WebAssembly work handed to ``VirtualWasmTaskManager/taskWasm(_:)``,
/// and what its run closure receives on the thread that runs it.
///
/// A `TaskWasm` is built on any thread and is `Sendable`: it carries only Sendable things (the
/// `Module`, the `Engine`, the memory spawn type, closures). The non-Sendable WasmKit values
/// (`Store`, `Instance`, `Memory`, `Function`) are created on the destination thread and live in
/// ``TaskWasmRunProperties``, which never leaves that thread.
import WasmKit

/// The exit code a guest asked for (`proc_exit`), or that ended a pending resume.
public struct WasmExitCode: Error, Sendable, Hashable, CustomStringConvertible {
  public var code: UInt32
  public init(_ code: UInt32) { self.code = code }
  public var description: String { "exit code \(code)" }
}

/// An exported function a task needs. Its absence (or a different signature) is a setup failure,
/// reported to the caller of `taskWasm` as `WasiThreadError.exportError`.
public struct WasmEntryPoint: Sendable, Hashable {
  public var name: String
  public var type: FunctionType

  public init(name: String, type: FunctionType) {
    self.name = name
    self.type = type
  }

  /// `wasi_thread_start(tid: i32, start_arg: i32)`, the entry of every wasi-threads thread.
  public static let wasiThreadStart = WasmEntryPoint(
    name: "wasi_thread_start", type: FunctionType(parameters: [.i32, .i32], results: []))
  /// `_start()`, the entry of a WASI command.
  public static let start = WasmEntryPoint(name: "_start", type: FunctionType(parameters: [], results: []))
}

/// A blocking WebAssembly operation: which module to instantiate, how its memory is obtained, how
/// its imports are built, what (if anything) to wait for, and what to run.
public struct TaskWasm: Sendable {
  /// Builds the imports of the new instance, on the destination thread, in its new `store`.
  /// `memory` is what ``VirtualWasmTaskManager/buildMemory(store:spawnType:)`` returned; when the
  /// module imports a memory, `taskWasm` defines that import with it after this builder returns.
  public typealias ImportsBuilder = @Sendable (_ store: Store, _ memory: Memory?) throws -> Imports
  /// Awaited on the destination thread after setup and before `run` (the deep-sleep resume
  /// path: it completes when the guest should wake). Its result is handed to `run`.
  public typealias Trigger = @Sendable () async -> Result<[UInt8], WasmExitCode>
  /// The body of the task; it owns the store and instance for as long as it runs.
  public typealias Run = @Sendable (_ properties: TaskWasmRunProperties) -> Void

  /// The module to instantiate (parsed with the features `engine` enables).
  public var module: Module
  /// The engine of the new store. Guest threads need `.threads` among its features.
  public var engine: Engine
  /// How the instance's memory is obtained.
  public var spawnType: SpawnMemoryType
  /// The export `run` will call, checked during setup; `nil` checks nothing.
  public var entryPoint: WasmEntryPoint?
  /// The builder of the instance's imports (WASI, `wasi.thread-spawn`, host functions).
  public var imports: ImportsBuilder
  /// What to wait for before running, if anything.
  public var trigger: Trigger?
  /// The task body.
  public var run: Run

  public init(
    module: Module,
    engine: Engine,
    spawnType: SpawnMemoryType = .createMemory,
    entryPoint: WasmEntryPoint? = nil,
    imports: @escaping ImportsBuilder = { _, _ in Imports() },
    trigger: Trigger? = nil,
    run: @escaping Run
  ) {
    self.module = module
    self.engine = engine
    self.spawnType = spawnType
    self.entryPoint = entryPoint
    self.imports = imports
    self.trigger = trigger
    self.run = run
  }
}

/// What a ``TaskWasm`` run closure receives. It belongs to the thread that runs the task: the
/// store and everything in it must not leave that thread (none of it is Sendable).
public struct TaskWasmRunProperties {
  /// The store created on this thread for this task.
  public let store: Store
  /// The instance of the task's module in `store`.
  public let instance: Instance
  /// The memory ``VirtualWasmTaskManager/buildMemory(store:spawnType:)`` built, if any
  /// (`nil` for `.createMemory`: the module's own memory is among `instance.exports`).
  public let memory: Memory?
  /// The task's entry point, resolved and type-checked, when the task named one.
  public let entryPoint: Function?
  /// What the trigger returned; `nil` when the task had no trigger.
  public let triggerResult: Result<[UInt8], WasmExitCode>?
}
