/// Guest threads through `wasi.thread-spawn` on a `ThreadPoolTaskManager`: exact atomic sums,
/// barriers wider than the worker pool, the live-thread limit, trap reports, id rules and typed
/// setup errors.
import Synchronization
import Testing
import VirtualTasks
import WasmKit

@testable import VirtualTasksWasm

@Suite struct GuestThreadTests {
  let engine = WasmThreads.makeEngine()

  /// A group for `wat` with N at offset 12, recording every thread exit.
  func makeGroup(
    _ wat: String, threads n: Int32, maxThreads: Int = 64, manager: ThreadPoolTaskManager,
    imports: @escaping GuestThreadGroup.ImportsBuilder = { _ in Imports() },
    exits: Recorder<(Int32, GuestThreadOutcome)>
  ) throws -> GuestThreadGroup {
    let group = try GuestThreadGroup(
      manager: manager, module: try WasmThreads.parseModule(wat: wat), engine: engine,
      configuration: .init(maxThreads: maxThreads), imports: imports,
      onExit: { exits.append(($0, $1)) })
    storeI32(group.sharedMemory, engine: engine, at: 12, n)
    return group
  }

  @Test func atomicAddsFromEveryGuestThread_sumExactly_onBlockingPoolThreads() async throws {
    try await withManager { manager in
      let n: Int32 = 4
      let records = Recorder<(Int32, String)>()
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(
        Fixtures.counter, threads: n, manager: manager, imports: recordingImports(records), exits: exits)

      try group.startMain()
      let main = try await within("the main thread") { await group.joined(GuestThreadGroup.mainThreadID) }
      #expect(main == .returned)
      try await within("every guest thread") { await group.idle() }

      #expect(loadI32(group.sharedMemory, engine: engine, at: 8) == 0, "no spawn was refused")
      #expect(loadI32(group.sharedMemory, engine: engine, at: 0) == n * 100_000)
      #expect(loadI32(group.sharedMemory, engine: engine, at: 16) == 1)
      let recorded = records.all
      #expect(Set(recorded.map(\.0)) == Set(1...n))
      for (id, name) in recorded {
        #expect(name.hasPrefix(blockingThreadPrefix), "thread \(id) ran on \(name)")
      }
      #expect(exits.all.count == Int(n) + 1)
      #expect(exits.all.allSatisfy { $0.1 == .returned })
      #expect(group.liveThreadCount == 0)
      #expect(group.spawnedThreadCount == Int(n))
    }
  }

  @Test func thirtyTwoThreadsWaitingOnEachOther_completeOnATwoWorkerManager() async throws {
    try await withManager(workers: 2) { manager in
      let n: Int32 = 32
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(Fixtures.barrier, threads: n, manager: manager, exits: exits)

      try group.startMain()
      try await within("32 threads through the barrier") { await group.idle() }

      #expect(loadI32(group.sharedMemory, engine: engine, at: 8) == 0)
      #expect(loadI32(group.sharedMemory, engine: engine, at: 0) == n)
      #expect(loadI32(group.sharedMemory, engine: engine, at: 4) == n)
      #expect(exits.all.count == Int(n) + 1)
      #expect(manager.metrics().workerThreads == 2)
    }
  }

  @Test func spawnPastTheLimit_returnsNegativeAtOnce_andSlotsReturnAfterJoins() async throws {
    // Four live threads at most, the main one included: the 4th and 5th spawns are refused while
    // the first three block (they wait for a flag the main thread sets only after all 5 spawns,
    // so a spawn that waited for a slot would deadlock the test instead of passing).
    try await withManager { manager in
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(Fixtures.limit, threads: 5, maxThreads: 4, manager: manager, exits: exits)

      try group.startMain()
      try await within("the threads to be released") { await group.idle() }

      let results = (0..<5).map { loadI32(group.sharedMemory, engine: engine, at: 32 + 4 * $0) }
      #expect(results == [1, 2, 3, GuestThreadGroup.spawnRefused, GuestThreadGroup.spawnRefused])
      #expect(loadI32(group.sharedMemory, engine: engine, at: 4) == 3)
      #expect(group.liveThreadCount == 0)

      // The slots are free again, and ids are never reused.
      let id = try group.spawnThread(startArgument: 9)
      #expect(id == 4)
      #expect(try await within("thread 4") { await group.joined(id) } == .returned)
      #expect(group.liveThreadCount == 0)
      #expect(group.join(id) == .returned, "a retained outcome can be joined again")
    }
  }

  @Test func aTrappingGuestThread_isReported_andTheOthersContinue() async throws {
    try await withManager { manager in
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(Fixtures.trap, threads: 0, manager: manager, exits: exits)

      try group.startMain()
      try await within("the threads") { await group.idle() }

      #expect(loadI32(group.sharedMemory, engine: engine, at: 0) == 2, "threads 1 and 3 ran")
      let byThread = Dictionary(uniqueKeysWithValues: exits.all.map { ($0.0, $0.1) })
      #expect(byThread[0] == .returned)
      #expect(byThread[1] == .returned)
      #expect(byThread[3] == .returned)
      guard case .trapped(let message) = byThread[2] else {
        Issue.record("thread 2 should have trapped, got \(String(describing: byThread[2]))")
        return
      }
      #expect(message.contains("unreachable"))
      #expect(!message.contains("\n"))
      #expect(group.join(2) == byThread[2])
    }
  }

  @Test func aModuleWithoutWasiThreadStart_failsTheSpawnWithATypedError() async throws {
    try await withManager { manager in
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(Fixtures.noThreadStart, threads: 0, manager: manager, exits: exits)

      let error = #expect(throws: WasiThreadError.self) { try group.spawnThread(startArgument: 0) }
      guard case .exportError(let message) = error else {
        Issue.record("expected .exportError, got \(String(describing: error))")
        return
      }
      #expect(message.contains("wasi_thread_start"))
      #expect(group.liveThreadCount == 0)
      #expect(group.spawnedThreadCount == 0)

      // The guest sees a negative result (its `_start` traps on a non-negative one).
      try group.startMain()
      #expect(try await within("the main thread") { await group.joined(0) } == .returned)
    }
  }

  @Test func aModuleWithoutASharedMemoryImport_isRefused() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.standalone)
      let error = #expect(throws: WasiThreadError.self) {
        try GuestThreadGroup(manager: manager, module: module, engine: engine)
      }
      guard case .memoryCreateFailed = error else {
        Issue.record("expected .memoryCreateFailed, got \(String(describing: error))")
        return
      }
    }
  }

  @Test func anEngineWithoutThreads_isRefused() async throws {
    try await withManager { manager in
      let module = try WasmThreads.parseModule(wat: Fixtures.trap)
      #expect(throws: WasiThreadError.self) {
        try GuestThreadGroup(manager: manager, module: module, engine: Engine())
      }
    }
  }

  @Test func theMainThreadStartsOnce() async throws {
    try await withManager { manager in
      let exits = Recorder<(Int32, GuestThreadOutcome)>()
      let group = try makeGroup(Fixtures.noThreadStart, threads: 0, manager: manager, exits: exits)
      try group.startMain()
      #expect(throws: WasiThreadError.resourceExhausted) { try group.startMain() }
      try await within("the main thread") { await group.idle() }
    }
  }
}

@Suite struct GuestThreadTableTests {
  @Test func idsStartAtOne_areNeverReused_andSlotsAreCounted() {
    var table = GuestThreadTable(maxLive: 2, retainedOutcomes: 8)
    let first = table.reserve()
    let second = table.reserve()
    #expect(first?.id == 1)
    #expect(second?.id == 2)
    #expect(table.reserve() == nil, "full")
    table.finish(1)
    table.abandon(2)
    #expect(table.live == 0)
    #expect(table.spawned == 1)
    #expect(table.reserve()?.id == 3)
  }

  @Test func idsStopBelow0x20000000() {
    var table = GuestThreadTable(maxLive: 10, retainedOutcomes: 8, firstID: 0x1FFF_FFFE)
    #expect(table.reserve()?.id == 0x1FFF_FFFE)
    #expect(table.reserve()?.id == 0x1FFF_FFFF)
    #expect(table.reserve() == nil)
    #expect(table.live == 2)
  }

  @Test func onlyTheNewestOutcomesAreRetained() {
    var table = GuestThreadTable(maxLive: 10, retainedOutcomes: 2)
    for _ in 0..<3 {
      let id = table.reserve()!.id
      table.finish(id)
    }
    #expect(table.record(of: 1) == nil)
    #expect(table.record(of: 2) != nil)
    #expect(table.record(of: 3) != nil)
  }

  @Test func theMainThreadTakesASlot() {
    var table = GuestThreadTable(maxLive: 1, retainedOutcomes: 2)
    #expect(table.reserveMain() != nil)
    #expect(table.reserve() == nil)
    #expect(table.reserveMain() == nil)
  }
}
