/// `taskWasm`, `buildMemory` and `spawnWithModule` on a `ThreadPoolTaskManager`: where tasks
/// run, what each memory spawn type yields, and which typed error each setup failure gives.
import Dispatch
import Foundation
import Synchronization
import Testing
import VirtualTasks
import VirtualTasksWasm
import WasmKit

/// Delivers values from run closures (any thread) to the test task.
func makeInbox<T: Sendable>(_: T.Type = T.self) -> (AsyncStream<T>, AsyncStream<T>.Continuation) {
  AsyncStream<T>.makeStream()
}

func first<T: Sendable>(_ stream: AsyncStream<T>, _ what: String) async throws -> T {
  let value = try await within(what) { () async -> T? in
    for await value in stream { return value }
    return nil
  }
  guard let value else { throw TimedOut(what: what) }
  return value
}

@Suite struct TaskWasmTests {
  let engine = WasmThreads.makeEngine()

  /// Runs a task on `manager` whose module imports a shared memory, spawned with
  /// `.createMemoryOfType(MemoryType(min: 1))`, and returns the type of the memory it was given.
  func memoryTypeSeenByATask(on manager: some VirtualWasmTaskManager) async throws -> MemoryType? {
    let module = try WasmThreads.parseModule(wat: Fixtures.sharedImport)
    let (results, inbox) = makeInbox(MemoryType?.self)
    try manager.taskWasm(
      TaskWasm(
        module: module, engine: engine, spawnType: .createMemoryOfType(MemoryType(min: 1)),
        entryPoint: .wasiThreadStart
      ) { properties in
        inbox.yield(properties.memory?.type)
      })
    return try await first(results, "the task")
  }

  @Test func runsOnABlockingPoolThread_withItsOwnStoreAndInstance() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let (results, inbox) = makeInbox((String, UInt32?).self)
      try manager.taskWasm(
        TaskWasm(module: module, engine: engine) { properties in
          let answer = try? properties.instance.exports[function: "answer"]!()
          inbox.yield((threadName(), answer?.first?.i32))
        })
      let (name, answer) = try await first(results, "the task")
      #expect(name.hasPrefix(blockingThreadPrefix))
      #expect(answer == 42)
    }
  }

  @Test func copyMemory_givesAnIndependentCopy() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.peekPoke)
      let store = Store(engine: engine)
      let original = try Memory(store: store, type: MemoryType(min: 1))
      original.withUnsafeMutableBufferPointer(offset: 100, count: 1) { $0[0] = 42 }

      let (results, inbox) = makeInbox([UInt32].self)
      try manager.taskWasm(
        TaskWasm(module: module, engine: engine, spawnType: .copyMemory(MemoryImage(copying: original))) {
          properties in
          let peek = properties.instance.exports[function: "peek"]!
          let poke = properties.instance.exports[function: "poke"]!
          let before = (try? peek())?.first?.i32 ?? 0
          _ = try? poke()
          let after = (try? peek())?.first?.i32 ?? 0
          inbox.yield([before, after])
        })
      // The copy is complete when taskWasm returns: changing the original now cannot reach it.
      original.withUnsafeMutableBufferPointer(offset: 100, count: 1) { $0[0] = 43 }

      #expect(try await first(results, "the task") == [42, 7])
      #expect(original.withUnsafeBufferPointer(offset: 100, count: 1) { $0[0] } == 43)
    }
  }

  @Test func createMemoryOfType_yieldsASharedMemoryWithAMaximum() async throws {
    try await withManager { manager in
      // On the caller's thread, through the provided default.
      let store = Store(engine: engine)
      let memory = try manager.buildMemory(store: store, spawnType: .createMemoryOfType(MemoryType(min: 1)))
      #expect(memory?.type.shared == true)
      #expect(memory?.type.max == 65_536)
      #expect(try manager.buildMemory(store: store, spawnType: .createMemory) == nil)

      // In a task whose module imports a shared memory.
      let type = try await memoryTypeSeenByATask(on: manager)
      #expect(type?.shared == true)
      #expect(type?.max == 65_536)
    }
  }

  @Test func buildMemory_badTypes_areMemoryCreateFailed_andAnImageGrowsItsMemory() async throws {
    try await withManager { manager in
      let store = Store(engine: engine)
      // A shared memory cannot be a memory64.
      let memory64 = #expect(throws: WasiThreadError.self) {
        try manager.buildMemory(
          store: store, spawnType: .createMemoryOfType(MemoryType(min: 1, isMemory64: true)))
      }
      guard case .memoryCreateFailed = memory64 else {
        Issue.record("memory64: \(String(describing: memory64))")
        return
      }
      // An image larger than its type's maximum.
      let tooBig = MemoryImage(type: MemoryType(min: 1, max: 1), bytes: [UInt8](repeating: 1, count: 65_537))
      let overMax = #expect(throws: WasiThreadError.self) {
        try manager.buildMemory(store: store, spawnType: .copyMemory(tooBig))
      }
      #expect(overMax == .memoryCreateFailed("the image (2 pages) exceeds the memory's maximum (1 pages)"))
      // An image larger than its type's minimum: the memory grows to hold all of it.
      var bytes = [UInt8](repeating: 0, count: 65_537)
      bytes[65_536] = 77
      let grown = try manager.buildMemory(
        store: store, spawnType: .copyMemory(MemoryImage(type: MemoryType(min: 1), bytes: bytes)))
      #expect(grown?.byteCount == 2 * 65_536)
      #expect(grown?.withUnsafeBufferPointer(offset: 65_536, count: 1) { $0[0] } == 77)
    }
  }

  @Test func taskWasm_buildsItsMemoryThroughTheManagersOwnBuildMemory() async throws {
    try await withManager { manager in
      let custom = MemoryCountingManager(base: manager)
      // The override made a 3-page memory, not the 1 page the spawn type asked for.
      let type = try await memoryTypeSeenByATask(on: custom)
      #expect(type?.min == 3)
      #expect(custom.builds.withLock { $0 } == 1)
    }
  }

  @Test func shareMemory_showsTheSameBytes() async throws {
    try await withManager { manager in
      let shared = try SharedMemory(
        engine: engine, type: MemoryType(min: 1, max: 65_536, shared: true),
        resourceLimiter: DefaultResourceLimiter())
      storeI32(shared, engine: engine, at: 0, 1234)
      let module = try WasmThreads.parseModule(wat: Fixtures.sharedImport)
      let (results, inbox) = makeInbox(Int32.self)
      try manager.taskWasm(
        TaskWasm(module: module, engine: engine, spawnType: .shareMemory(shared)) { properties in
          let value = properties.memory!.withUnsafeBufferPointer(offset: 0, count: 4) {
            $0.load(as: Int32.self)
          }
          storeI32(shared, engine: properties.store.engine, at: 4, 5678)
          inbox.yield(value)
        })
      #expect(try await first(results, "the task") == 1234)
      #expect(loadI32(shared, engine: engine, at: 4) == 5678)
    }
  }

  @Test func spawnWithModule_handsTheModuleToABlockingThread() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let (results, inbox) = makeInbox((String, [String]).self)
      try manager.spawnWithModule(module) { handed in
        inbox.yield((threadName(), handed.exports.map(\.name)))
      }
      let (name, exports) = try await first(results, "the task")
      #expect(name.hasPrefix(blockingThreadPrefix))
      #expect(exports == ["memory", "answer"])
    }
  }

  @Test func trigger_runsAfterTaskWasmReturned_andItsResultReachesRun() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let (gate, opener) = makeInbox(Void.self)
      let (results, inbox) = makeInbox(Result<[UInt8], WasmExitCode>?.self)
      try manager.taskWasm(
        TaskWasm(
          module: module, engine: engine,
          trigger: {
            for await _ in gate { break }
            return .success([1, 2, 3])
          },
          run: { properties in inbox.yield(properties.triggerResult) }))
      // taskWasm returned while the trigger is still pending; open it now.
      opener.yield(())
      let result = try await first(results, "the triggered run")
      #expect(result == .success([1, 2, 3]))
    }
  }

  @Test func anInvalidBinary_isATypedError() {
    let error = #expect(throws: WasiThreadError.self) {
      try WasmThreads.parseModule(wasm: [0x00, 0x61, 0x73, 0x6d, 0x09])
    }
    guard case .initFailed = error else {
      Issue.record("expected .initFailed, got \(String(describing: error))")
      return
    }
  }

  @Test func failedInstantiation_isThrownByTaskWasm_andRunNeverHappens() async throws {
    try await withManager { manager in
      let ran = Atomic<Int>(0)
      for wat in [Fixtures.missingImport, Fixtures.trappingStart] {
        let module = try WasmThreads.parseModule(wat: wat)
        let error = #expect(throws: WasiThreadError.self) {
          try manager.taskWasm(
            TaskWasm(module: module, engine: engine) { _ in ran.add(1, ordering: .relaxed) })
        }
        guard case .instanceCreateFailed(let message) = error else {
          Issue.record("expected .instanceCreateFailed, got \(String(describing: error))")
          continue
        }
        #expect(!message.isEmpty && !message.contains("\n"))
      }
      #expect(ran.load(ordering: .relaxed) == 0)
    }
  }

  @Test func aMissingEntryPoint_isAnExportError() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let error = #expect(throws: WasiThreadError.self) {
        try manager.taskWasm(TaskWasm(module: module, engine: engine, entryPoint: .wasiThreadStart) { _ in })
      }
      #expect(error == .exportError("the module exports no function \"wasi_thread_start\""))

      let wrongType = WasmEntryPoint(name: "answer", type: FunctionType(parameters: [.i32]))
      let typeError = #expect(throws: WasiThreadError.self) {
        try manager.taskWasm(TaskWasm(module: module, engine: engine, entryPoint: wrongType) { _ in })
      }
      guard case .exportError = typeError else {
        Issue.record("expected .exportError, got \(String(describing: typeError))")
        return
      }
    }
  }

  @Test func aFailingImportsBuilder_isAnInitError() async throws {
    struct NoImports: Error {}
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let error = #expect(throws: WasiThreadError.self) {
        try manager.taskWasm(
          TaskWasm(module: module, engine: engine, imports: { _, _ in throw NoImports() }) { _ in })
      }
      guard case .initFailed = error else {
        Issue.record("expected .initFailed, got \(String(describing: error))")
        return
      }
    }
  }

  @Test(.timeLimit(.minutes(1)))
  func atTheBlockingCap_taskWasmFailsAtOnce_neverQueues_andAfterShutdownThrowsShutDown() async throws {
    try await withManager(workers: 1, maxBlocking: 1) { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      // The only blocking thread is busy: a guest thread cannot start, and must not wait for it.
      let (started, startedInbox) = makeInbox(Bool.self)
      let release = Gate()
      try manager.taskDedicated {
        startedInbox.yield(true)
        release.wait()
      }
      _ = try await first(started, "the blocking thread")
      let ran = Mutex(0)
      // From a plain thread, so that a taskWasm that queued (and so blocked its caller) fails this
      // test after `within`'s bound instead of hanging it.
      let (outcomes, outcomeInbox) = makeInbox(Result<Bool, WasiThreadError>.self)
      Thread.detachNewThread {
        do throws(WasiThreadError) {
          try manager.taskWasm(TaskWasm(module: module, engine: engine) { _ in ran.withLock { $0 += 1 } })
          outcomeInbox.yield(.success(true))
        } catch {
          outcomeInbox.yield(.failure(error))
        }
      }
      let atCap = try await first(outcomes, "taskWasm at the cap")
      #expect(atCap == .failure(.resourceExhausted))
      #expect(manager.metrics().queuedBlockingJobs == 0)
      release.open()
      // Below the cap again: the same call starts (on the thread just freed, or a new one).
      let (results, inbox) = makeInbox(String.self)
      try await within("a thread to free up") { await manager.eventuallyIdle() }
      try manager.taskWasm(TaskWasm(module: module, engine: engine) { _ in inbox.yield(threadName()) })
      #expect(try await first(results, "the task").hasPrefix(blockingThreadPrefix))
      try await within("the manager's shutdown") { await manager.shutdownGracefully() }
      let afterShutdown = #expect(throws: WasiThreadError.self) {
        try manager.taskWasm(TaskWasm(module: module, engine: engine) { _ in ran.withLock { $0 += 1 } })
      }
      #expect(afterShutdown == .shutDown)
      #expect(ran.withLock { $0 } == 0)
    }
  }

  @Test func aTaskTheManagerDrops_failsInsteadOfHanging() throws {
    let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
    let error = #expect(throws: WasiThreadError.self) {
      try DroppingManager().taskWasm(TaskWasm(module: module, engine: engine) { _ in })
    }
    #expect(error == .invalidWasmContext)
  }
}

/// A manager that accepts blocking work and drops it without running it.
struct DroppingManager: VirtualWasmTaskManager {
  func sleepNow(_ duration: Duration) async {}
  func taskShared(_ task: @escaping @Sendable () async -> Void) throws(WasiThreadError) {}
  func taskDedicated(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError) {}
  func threadParallelism() throws(WasiThreadError) -> Int { 1 }
  func taskWasm(_ task: TaskWasm) throws(WasiThreadError) { try taskWasmOnBlockingPool(task) }
}

/// A blocking gate for plain threads.
final class Gate: Sendable {
  private let semaphore = DispatchSemaphore(value: 0)
  func open() { semaphore.signal() }  // one waiter
  func wait() { semaphore.wait() }
}

extension ThreadPoolTaskManager {
  /// Suspends until no blocking thread is busy.
  func eventuallyIdle() async {
    while metrics().blockingThreadsBusy > 0 { try? await Task.sleep(for: .milliseconds(1)) }
  }
}

/// A manager that delegates to a `ThreadPoolTaskManager` and overrides `buildMemory` (3 pages,
/// counted), to show that the default `taskWasm` machinery calls the manager's own.
final class MemoryCountingManager: VirtualWasmTaskManager {
  let base: ThreadPoolTaskManager
  let builds = Mutex(0)
  init(base: ThreadPoolTaskManager) { self.base = base }
  func sleepNow(_ duration: Duration) async { await base.sleepNow(duration) }
  func taskShared(_ task: @escaping @Sendable () async -> Void) throws(WasiThreadError) {
    try base.taskShared(task)
  }
  func taskDedicated(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError) {
    try base.taskDedicated(task)
  }
  func threadParallelism() throws(WasiThreadError) -> Int { try base.threadParallelism() }
  func taskWasm(_ task: TaskWasm) throws(WasiThreadError) { try taskWasmOnBlockingPool(task) }
  func buildMemory(store: Store, spawnType: SpawnMemoryType) throws(WasiThreadError) -> Memory? {
    builds.withLock { $0 += 1 }
    return try base.buildMemory(store: store, spawnType: .createMemoryOfType(MemoryType(min: 3)))
  }
}
