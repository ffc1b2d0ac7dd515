/// `GuestThreadGroup`: the wasi-threads `wasi.thread-spawn` host for one program, every guest
/// thread run through ``VirtualWasmTaskManager/taskWasm(_:)`` on the manager's blocking pool.
///
/// The group owns the program's `SharedMemory` (made from the module's shared memory import),
/// hands out thread ids and live slots (``GuestThreadTable``), and reports how each thread ended
/// (``GuestThreadOutcome``) to an exit handler and to joiners. Unlike WasmKit's own
/// `WASIThreads`, threads come from the manager's reusable pool, a spawn past the limit returns a
/// negative value to the guest at once, and a trap is reported, never a process exit.
///
/// Threads: `thread-spawn` runs on the spawning guest thread and blocks it only until the new
/// thread's setup is done (a store, the shared memory wrapped in it, an instance). The exit
/// handler runs on the exiting guest thread; keep it short. Every other method: any thread.
import VirtualTasks
import WasmKit

public final class GuestThreadGroup: @unchecked Sendable {  // `table` is guarded by `monitor`
  public struct Configuration: Sendable {
    /// Live guest threads at once, the main thread included (WasmKit's CLI counts the same way).
    public var maxThreads: Int
    /// Finished threads whose outcome `join` still reports (older ones report `nil`).
    public var retainedOutcomes: Int

    public init(maxThreads: Int = 64, retainedOutcomes: Int = 1024) {
      self.maxThreads = maxThreads
      self.retainedOutcomes = retainedOutcomes
    }
  }

  /// Builds the imports every instance of the program gets (WASI, host functions), in `store`,
  /// on the thread that will run it. The group adds `wasi.thread-spawn` and the shared memory.
  public typealias ImportsBuilder = @Sendable (_ store: Store) throws -> Imports
  /// Told how each thread ended, on that thread, before joiners are woken.
  public typealias ExitHandler = @Sendable (_ thread: Int32, _ outcome: GuestThreadOutcome) -> Void

  /// The id under which the main thread (``startMain(entryPoint:)``) is reported and joined.
  public static let mainThreadID: Int32 = 0
  /// What `thread-spawn` returns to the guest when it refuses: -EAGAIN in WASI's errno numbering.
  public static let spawnRefused: Int32 = -6

  public let module: Module
  public let engine: Engine
  /// The program's linear memory, shared by every guest thread's store.
  public let sharedMemory: SharedMemory
  public let configuration: Configuration

  private let manager: any VirtualWasmTaskManager
  private let imports: ImportsBuilder
  private let onExit: ExitHandler
  private let monitor = Monitor()
  private var table: GuestThreadTable
  private var idleWaiters: [CheckedContinuation<Void, Never>] = []

  /// Prepares a group for `module`, which must import exactly one shared wasm32 memory (the
  /// wasi-threads convention) and be parsed with `engine`'s features, `.threads` among them.
  public init(
    manager: some VirtualWasmTaskManager,
    module: Module,
    engine: Engine,
    configuration: Configuration = .init(),
    imports: @escaping ImportsBuilder = { _ in Imports() },
    onExit: @escaping ExitHandler = { _, _ in }
  ) throws(WasiThreadError) {
    guard configuration.maxThreads >= 1 else {
      throw .initFailed("maxThreads must be at least 1 (it counts the main thread)")
    }
    guard engine.configuration.features.contains(.threads) else {
      throw .initFailed("the engine does not enable the WebAssembly threads feature")
    }
    let sharedImports = module.imports.compactMap { entry -> MemoryType? in
      guard case .memory(let type) = entry.descriptor, type.shared, !type.isMemory64 else { return nil }
      return type
    }
    guard sharedImports.count == 1, let memoryType = sharedImports.first else {
      throw .memoryCreateFailed(
        "a wasi-threads module imports exactly one shared wasm32 memory (found \(sharedImports.count))")
    }
    do {
      self.sharedMemory = try SharedMemory(
        engine: engine, type: memoryType, resourceLimiter: DefaultResourceLimiter())
    } catch {
      throw .memoryCreateFailed(oneLine(error))
    }
    self.module = module
    self.engine = engine
    self.configuration = configuration
    self.manager = manager
    self.imports = imports
    self.onExit = onExit
    self.table = GuestThreadTable(
      maxLive: configuration.maxThreads, retainedOutcomes: max(0, configuration.retainedOutcomes))
  }

  // MARK: Spawning

  /// Defines `wasi.thread-spawn` for an instance in `store` (the group's own instances get it
  /// already; this is for instances the host builds itself).
  public func link(into imports: inout Imports, store: Store) {
    imports.define(
      module: "wasi", name: "thread-spawn",
      Function(store: store, parameters: [.i32], results: [.i32]) { [self] _, arguments in
        let result = spawnFromGuest(startArgument: Int32(bitPattern: arguments[0].i32))
        return [.i32(UInt32(bitPattern: result))]
      })
  }

  /// Starts a guest thread at `wasi_thread_start(id, startArgument)`; returns its id once its
  /// setup is done. Throws `WasiThreadError.resourceExhausted` at the live limit or out of
  /// ids, and whatever `taskWasm` throws (a missing `wasi_thread_start` is `.exportError`).
  @discardableResult
  public func spawnThread(startArgument: Int32) throws(WasiThreadError) -> Int32 {
    guard let reserved = monitor.withLock({ table.reserve() }) else { throw .resourceExhausted }
    let (id, record) = reserved
    let task = TaskWasm(
      module: module, engine: engine, spawnType: .shareMemory(sharedMemory),
      entryPoint: .wasiThreadStart,
      imports: { [self] store, _ in try instanceImports(store) },
      run: { [self] properties in
        let entry = properties.entryPoint!
        let outcome = GuestThreadOutcome.of {
          _ = try entry([.i32(UInt32(bitPattern: id)), .i32(UInt32(bitPattern: startArgument))])
        }
        finish(id, record: record, outcome: outcome)
      })
    do {
      try manager.taskWasm(task)
    } catch {
      abandon(id)
      throw error
    }
    return id
  }

  /// `wasi.thread-spawn` as the guest sees it: the new id, or ``spawnRefused`` at once.
  func spawnFromGuest(startArgument: Int32) -> Int32 {
    do {
      return try spawnThread(startArgument: startArgument)
    } catch {
      return Self.spawnRefused
    }
  }

  /// Runs the main thread (``mainThreadID``): instantiates the module on a blocking-pool thread
  /// and calls `entryPoint` there. Returns once setup is done; join or the exit handler tell how
  /// it ended. At most one main thread per group; it occupies one of the live slots.
  public func startMain(entryPoint: WasmEntryPoint = .start) throws(WasiThreadError) {
    guard entryPoint.type.parameters.isEmpty else {
      throw .exportError("the main entry point \"\(entryPoint.name)\" must take no parameters")
    }
    guard let record = monitor.withLock({ table.reserveMain() }) else { throw .resourceExhausted }
    let task = TaskWasm(
      module: module, engine: engine, spawnType: .shareMemory(sharedMemory), entryPoint: entryPoint,
      imports: { [self] store, _ in try instanceImports(store) },
      run: { [self] properties in
        let entry = properties.entryPoint!
        let outcome = GuestThreadOutcome.of { _ = try entry([]) }
        finish(Self.mainThreadID, record: record, outcome: outcome)
      })
    do {
      try manager.taskWasm(task)
    } catch {
      abandon(Self.mainThreadID)
      throw error
    }
  }

  private func instanceImports(_ store: Store) throws -> Imports {
    var result = try imports(store)
    link(into: &result, store: store)
    return result
  }

  // MARK: Exits and joins

  private func abandon(_ id: Int32) {
    let waiters = monitor.withLock {
      table.abandon(id)
      return takeIdleWaitersIfIdle()
    }
    for waiter in waiters { waiter.resume() }
  }

  private func finish(_ id: Int32, record: OneShot<GuestThreadOutcome>, outcome: GuestThreadOutcome) {
    onExit(id, outcome)
    let waiters = monitor.withLock {
      table.finish(id)
      return takeIdleWaitersIfIdle()
    }
    record.fulfil(outcome)
    for waiter in waiters { waiter.resume() }
  }

  /// With the lock held: wakes blocked `waitUntilIdle` callers and hands back async ones.
  private func takeIdleWaitersIfIdle() -> [CheckedContinuation<Void, Never>] {
    guard table.live == 0 else { return [] }
    monitor.broadcast()
    defer { idleWaiters = [] }
    return idleWaiters
  }

  /// Guest threads reserved or running now, the main thread included while it runs.
  public var liveThreadCount: Int { monitor.withLock { table.live } }

  /// Guest threads spawned so far (refused and failed spawns not counted, the main thread not
  /// included).
  public var spawnedThreadCount: Int { monitor.withLock { table.spawned } }

  /// Blocks until thread `id` ended and returns how; nil for an id never issued or forgotten
  /// (see ``Configuration/retainedOutcomes``). Don't call it on an async worker thread.
  public func join(_ id: Int32) -> GuestThreadOutcome? {
    monitor.withLock { table.record(of: id) }?.wait()
  }

  /// Suspends (never blocking a thread) until thread `id` ended; nil as for ``join(_:)``.
  public func joined(_ id: Int32) async -> GuestThreadOutcome? {
    guard let record = monitor.withLock({ table.record(of: id) }) else { return nil }
    return await record.value()
  }

  /// Blocks until no guest thread is live. Don't call it on an async worker thread.
  public func waitUntilIdle() {
    monitor.withLock { monitor.wait { table.live == 0 } }
  }

  /// Suspends (never blocking a thread) until no guest thread is live.
  public func idle() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let idleNow = monitor.withLock {
        if table.live == 0 { return true }
        idleWaiters.append(continuation)
        return false
      }
      if idleNow { continuation.resume() }
    }
  }
}
