/// The default `taskWasm` machinery: a ``TaskWasm`` run on the blocking pool through
/// `taskDedicated`, with its `Store` built on the thread that runs it.
///
/// Protocol, in order:
/// 1. The caller submits one closure with `taskDedicated` and blocks on a one-shot hand-off.
/// 2. The blocking-pool thread creates the `Store`, builds the memory (`buildMemory`), the
///    imports (the task's builder, then the memory import), instantiates the module (which runs
///    its start function) and resolves the entry point.
/// 3. Setup failed: the error is handed to the caller, which throws it; `run` never happens.
///    Setup succeeded: a trigger, if any, is submitted to the shared pool, then the caller is
///    released and returns.
/// 4. The thread waits for the trigger's result (holding its OS thread: a `Store` cannot move
///    to another thread), then calls `run` with the store, instance and result.
/// If the manager drops the closure without running it, the caller gets `.invalidWasmContext`
/// (the ticket's `deinit`), never a hang. The caller thread: any thread that may block.
import VirtualTasks
import WasmKit

import struct WasmParser.Import

extension VirtualWasmTaskManager {
  /// Runs `task` on a `taskDedicated` thread as described at the top of this file; the building
  /// block of every `taskWasm` implementation in this package.
  public func taskWasmOnBlockingPool(_ task: TaskWasm) throws(WasiThreadError) {
    try taskWasmOnBlockingPool(task) { (body) throws(WasiThreadError) in try taskDedicated(body) }
  }

  /// The same, with `submit` choosing how the destination closure reaches a blocking thread
  /// (`ThreadPoolTaskManager` passes `taskDedicatedNow`: a guest thread starts at once or the
  /// spawn fails, it never waits in a queue behind threads that may wait for it).
  public func taskWasmOnBlockingPool(
    _ task: TaskWasm,
    submit: (@escaping @Sendable () -> Void) throws(WasiThreadError) -> Void
  ) throws(WasiThreadError) {
    let setup = OneShot<Result<Void, WasiThreadError>>()
    try submit(destinationBody(task, setup: setup))
    try setup.wait().get()
  }

  /// The closure for `taskDedicated`. Its ticket is referenced by the closure alone, so that
  /// releasing an unrun closure releases the ticket.
  private func destinationBody(
    _ task: TaskWasm, setup: OneShot<Result<Void, WasiThreadError>>
  ) -> @Sendable () -> Void {
    let ticket = SetupTicket(setup)
    return { [self] in runTaskWasmHere(task, ticket: ticket) }
  }

  /// Steps 2 to 4, on the destination thread.
  private func runTaskWasmHere(_ task: TaskWasm, ticket: SetupTicket) {
    let store = Store(engine: task.engine)
    let memory: Memory?
    let instance: Instance
    let entryPoint: Function?
    do throws(WasiThreadError) {
      memory = try buildMemory(store: store, spawnType: task.spawnType)
      instance = try instantiate(task, store: store, memory: memory)
      entryPoint = try resolve(task.entryPoint, in: instance)
    } catch {
      ticket.setup.fulfil(.failure(error))
      return
    }

    var triggered: OneShot<Result<[UInt8], WasmExitCode>>?
    if let trigger = task.trigger {
      let result = OneShot<Result<[UInt8], WasmExitCode>>()
      do throws(WasiThreadError) {
        try taskShared { result.fulfil(await trigger()) }
      } catch {
        ticket.setup.fulfil(.failure(error))
        return
      }
      triggered = result
    }
    ticket.setup.fulfil(.success(()))

    let triggerResult = triggered?.wait()
    task.run(
      TaskWasmRunProperties(
        store: store, instance: instance, memory: memory, entryPoint: entryPoint,
        triggerResult: triggerResult))
  }

  private func instantiate(
    _ task: TaskWasm, store: Store, memory: Memory?
  ) throws(WasiThreadError) -> Instance {
    var imports: Imports
    do {
      imports = try task.imports(store, memory)
    } catch {
      throw .initFailed("building the imports failed: \(oneLine(error))")
    }
    if let memory, let memoryImport = task.module.imports.first(where: \.isMemory) {
      imports.define(module: memoryImport.module, name: memoryImport.name, memory)
    }
    do {
      return try task.module.instantiate(store: store, imports: imports)
    } catch {
      throw .instanceCreateFailed(oneLine(error))
    }
  }

  private func resolve(_ entry: WasmEntryPoint?, in instance: Instance) throws(WasiThreadError) -> Function? {
    guard let entry else { return nil }
    guard let function = instance.exports[function: entry.name] else {
      throw .exportError("the module exports no function \"\(entry.name)\"")
    }
    guard function.type == entry.type else {
      throw .exportError("\"\(entry.name)\" has type \(function.type), expected \(entry.type)")
    }
    return function
  }
}

/// The caller's side of the setup hand-off, captured by the submitted closure. Released without
/// having delivered a result (the manager dropped the closure), it tells the caller so.
private final class SetupTicket: Sendable {
  let setup: OneShot<Result<Void, WasiThreadError>>

  init(_ setup: OneShot<Result<Void, WasiThreadError>>) { self.setup = setup }

  deinit {
    setup.fulfil(.failure(.invalidWasmContext))
  }
}

extension Import {
  fileprivate var isMemory: Bool {
    if case .memory = descriptor { return true }
    return false
  }
}
