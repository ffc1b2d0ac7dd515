/// The WebAssembly half of the task-manager contract (DESIGN.md section 9): the protocol
/// `VirtualWasmTaskManager` and the default implementations of its provided methods.
///
/// Every method may be called from any thread. `taskWasm` blocks its caller until the task's
/// setup finished on the destination thread, so call it from a thread that may block (a guest
/// thread, a host thread), not from an async worker.
import VirtualTasks
import WasmKit

/// A `VirtualTaskManager` that can also run WebAssembly: guest threads, resumed guests, and
/// work that needs a `Module` handed to it explicitly.
public protocol VirtualWasmTaskManager: VirtualTaskManager {
  /// Runs a blocking WebAssembly task on a thread that may block (the blocking pool).
  ///
  /// The `Store`, memory and instance are created on that thread. Returns once setup finished
  /// there; setup failures (memory, imports, instantiation, a missing entry point) are thrown
  /// here, before it returns, and `run` is then never called. The task's trigger and run happen
  /// after it returns. ``taskWasmOnBlockingPool(_:)`` implements it on `taskDedicated`.
  func taskWasm(_ task: TaskWasm) throws(WasiThreadError)

  /// Builds the memory of a new task in its `store`, on the task's thread; `nil` lets the
  /// instantiation make its own. Provided; override to pool or account for memories.
  func buildMemory(store: Store, spawnType: SpawnMemoryType) throws(WasiThreadError) -> Memory?

  /// Runs `task` on the blocking pool and hands it `module` explicitly (the seed's transfer path
  /// for code that holds a module; a `Module` is Sendable here, but the hand-off stays explicit).
  func spawnWithModule(
    _ module: Module, task: @escaping @Sendable (Module) -> Void
  ) throws(WasiThreadError)
}

extension VirtualWasmTaskManager {
  /// The default: see ``SpawnMemoryType``. Failures are `WasiThreadError.memoryCreateFailed`.
  public func buildMemory(store: Store, spawnType: SpawnMemoryType) throws(WasiThreadError) -> Memory? {
    try spawnType.makeMemory(in: store)
  }

  /// The default: `taskDedicated { task(module) }`.
  public func spawnWithModule(
    _ module: Module, task: @escaping @Sendable (Module) -> Void
  ) throws(WasiThreadError) {
    try taskDedicated { task(module) }
  }
}
