import CShims
import Foundation
import Synchronization
import Testing

@testable import VirtualTasks

@Suite("Executor: worker pool, blocking pool, shutdown")
struct ExecutorTests {
  @Test func sharedTasks_100k_allRunExactlyOnce_onWorkers() async throws {
    let n = 100_000
    let mgr = try makeManager(workers: 2, prefix: "ledgerA")
    let ledger = Ledger(count: n)
    let offWorker = Atomic<Int>(0)
    for i in 0..<n {
      try mgr.taskShared {
        if !currentThreadName().hasPrefix("ledgerA-w") { offWorker.wrappingAdd(1, ordering: .relaxed) }
        ledger.mark(i)
      }
    }
    await mgr.shutdownGracefully()  // runs every accepted task
    #expect(ledger.allExactlyOnce)
    #expect(ledger.total == n)
    #expect(offWorker.load(ordering: .relaxed) == 0)
    #expect(mgr.metrics().completedSharedTasks == n)
  }

  // From a plain thread (outside any task) `taskShared` queues a spawn request and a worker
  // creates the task; the tests above submit from inside a task, where it is created directly.
  @Test func sharedTasks_fromAPlainThread_100k_allRunExactlyOnce_onWorkers() async throws {
    let n = 100_000
    let mgr = try makeManager(workers: 2, prefix: "plainA")
    let ledger = Ledger(count: n)
    let offWorker = Atomic<Int>(0)
    let submitted = Countdown(1)
    let insideTask = Atomic<Bool>(true)
    Thread.detachNewThread {
      insideTask.store(withUnsafeCurrentTask { $0 != nil }, ordering: .relaxed)
      for i in 0..<n {
        try! mgr.taskShared {
          if !currentThreadName().hasPrefix("plainA-w") { offWorker.wrappingAdd(1, ordering: .relaxed) }
          ledger.mark(i)
        }
      }
      submitted.tick()
    }
    await submitted.wait()
    let submitterWasInATask = insideTask.load(ordering: .relaxed)
    #expect(!submitterWasInATask, "the submitter must be outside any task")
    await mgr.shutdownGracefully()
    #expect(ledger.allExactlyOnce)
    #expect(ledger.total == n)
    #expect(offWorker.load(ordering: .relaxed) == 0)
    #expect(mgr.metrics().completedSharedTasks == n)
  }

  @Test func sharedTasks_fromAPlainThread_queuedAtShutdown_allRun() async throws {
    let mgr = try makeManager(workers: 1, prefix: "plainB")
    let gate = try await holdAWorker(of: mgr)  // the single one: the spawn requests stay queued
    let ran = Atomic<Int>(0)
    let submitted = Countdown(1)
    Thread.detachNewThread {
      for _ in 0..<10_000 { try! mgr.taskShared { ran.wrappingAdd(1, ordering: .relaxed) } }
      submitted.tick()
    }
    await submitted.wait()
    #expect(mgr.metrics().queuedSharedJobs >= 10_000, "queued spawn requests count as queued jobs")
    let shutdown = Task { await mgr.shutdownGracefully() }
    #expect(await eventually { (try? mgr.taskShared {}) == nil })
    gate.open()
    await shutdown.value
    #expect(ran.load(ordering: .relaxed) == 10_000)
  }

  @Test func droppingTheManager_withSpawnRequestsQueued_runsThemAll_thenStopsItsThreads() async throws {
    let ran = Atomic<Int>(0)
    let gate: Gate
    let submitted = Countdown(1)
    do {
      let mgr = try makeManager(workers: 1, prefix: "plainC")
      gate = try await holdAWorker(of: mgr)  // the single one, while the manager is dropped
      Thread.detachNewThread {
        for _ in 0..<1000 { try! mgr.taskShared { ran.wrappingAdd(1, ordering: .relaxed) } }
        submitted.tick()
      }
      await submitted.wait()
    }
    // The test holds no reference now: the queued requests keep the manager alive.
    gate.open()
    #expect(await eventually { ran.load(ordering: .relaxed) == 1000 })
    #expect(await eventually { threadsNamed("plainC-") == 0 }, "the manager is released and stops its threads")
  }

  @Test func sharedTask_inheritsTaskLocals_fromASubmittingTask_only() async throws {
    let mgr = try makeManager(workers: 2, prefix: "locals")
    let seen = Locked<[Int?]>([])
    let done = Countdown(2)
    try ExecutorTests.$tag.withValue(7) {
      try mgr.taskShared {
        seen.withLock { $0.append(ExecutorTests.tag) }
        done.tick()
      }
    }
    Thread.detachNewThread {
      try! mgr.taskShared {
        seen.withLock { $0.append(ExecutorTests.tag) }
        done.tick()
      }
    }
    await done.wait()
    let values = seen.withLock { $0 }
    #expect(values.contains(7), "created in the submitting task: inherits its task-local values")
    #expect(values.contains(nil), "from a plain thread: no task-local values")
    await mgr.shutdownGracefully()
  }

  @TaskLocal static var tag: Int?

  @Test func dedicatedTasks_100k_allRunExactlyOnce_onBlockingThreads() async throws {
    let n = 100_000
    let mgr = try makeManager(workers: 1, maxBlocking: 4, prefix: "ledgerB")
    let ledger = Ledger(count: n)
    let offPool = Atomic<Int>(0)
    for i in 0..<n {
      try mgr.taskDedicated {
        if !currentThreadName().hasPrefix("ledgerB-b") { offPool.wrappingAdd(1, ordering: .relaxed) }
        ledger.mark(i)
      }
    }
    await mgr.shutdownGracefully()
    #expect(ledger.allExactlyOnce)
    #expect(offPool.load(ordering: .relaxed) == 0)
    #expect(mgr.metrics().completedBlockingJobs == n)
  }

  @Test func taskGroupAndAsyncLetChildren_stayOnWorkers() async throws {
    let mgr = try makeManager(workers: 2, prefix: "kids")
    let names = Locked<[String]>([])
    let done = Countdown(1)
    try mgr.taskShared {
      await withTaskGroup(of: String.self) { group in
        for _ in 0..<50 {
          group.addTask {
            await Task.yield()
            return currentThreadName()
          }
        }
        for await name in group { names.withLock { $0.append(name) } }
      }
      async let a = { () async -> String in await Task.yield(); return currentThreadName() }()
      async let b = { () async -> String in currentThreadName() }()
      let (x, y) = await (a, b)
      names.withLock { $0 += [x, y, currentThreadName()] }
      done.tick()
    }
    await done.wait()
    let all = names.withLock { $0 }
    #expect(all.count == 53)
    #expect(all.allSatisfy { $0.hasPrefix("kids-w") }, "\(Set(all))")
    await mgr.shutdownGracefully()
  }

  @Test func blockingPool_300WaitersOnOneBarrier_complete_thenShrinkAfterKeepAlive() async throws {
    let mgr = try makeManager(workers: 1, maxBlocking: 400, keepAlive: .milliseconds(200), prefix: "barrier")
    let arrived = ConditionLock()
    let count = Locked(0)
    let finished = Countdown(300)
    for _ in 0..<300 {
      try mgr.taskDedicated {
        arrived.lock()
        let now = count.withLock { $0 += 1; return $0 }
        if now == 300 { arrived.broadcast() }
        while count.withLock({ $0 }) < 300 { arrived.wait() }
        arrived.unlock()
        finished.tick()
      }
    }
    await finished.wait()
    #expect(mgr.metrics().blockingThreads <= 300)
    // Idle threads retire after the keep-alive (an OS effect with no event: poll for it).
    #expect(await eventually { mgr.metrics().blockingThreads == 0 })
    await mgr.shutdownGracefully()
  }

  // Below the cap, closures submitted at once from two threads each get a thread, or two that
  // wait for each other deadlock (here: time out). Every round, two threads submit one closure
  // each at once, and each closure waits for the other's, while the pool's threads from the
  // round before are spinning or parked. (The narrowest race this guards, two submits on the
  // lock-free path counting the same spinning thread, was not reproduced by it: with that guard
  // removed, 3 runs still passed. The guard is argued in `BlockingPool.submit`.)
  @Test func blockingPool_pairsWaitingForEachOther_submittedAtOnce_allComplete() async throws {
    let mgr = try makeManager(workers: 1, maxBlocking: 64, keepAlive: .seconds(60), prefix: "pair")
    let rounds = 1500
    let timedOut = Atomic<Int>(0)
    let done = Countdown(1)
    Thread.detachNewThread {
      for _ in 0..<rounds {
        let a = DispatchSemaphore(value: 0)
        let b = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        for (mine, theirs) in [(a, b), (b, a)] {
          finished.enter()
          Thread.detachNewThread {
            go.wait()
            try! mgr.taskDedicated {
              theirs.signal()
              if mine.wait(timeout: .now() + .seconds(2)) == .timedOut {
                timedOut.add(1, ordering: .relaxed)
              }
              finished.leave()
            }
          }
        }
        go.signal()
        go.signal()
        finished.wait()
      }
      done.tick()
    }
    await done.wait()
    #expect(timedOut.load(ordering: .relaxed) == 0)
    await mgr.shutdownGracefully()
  }

  // Sequential round trips find the one thread spinning or parked idle and hand it the work:
  // no second thread is started for them.
  @Test func blockingPool_sequentialRoundTrips_reuseOneThread() async throws {
    // A keep-alive far beyond the test's length: reuse is the premise here, not retirement (under
    // ThreadSanitizer on a loaded 2-core VM the 2000 round trips took 19 s, and the thread had
    // retired when the count was read).
    let mgr = try makeManager(workers: 1, maxBlocking: 8, keepAlive: .seconds(3600), prefix: "reuse")
    let ran = Atomic<Int>(0)
    let submitted = Countdown(1)
    Thread.detachNewThread {
      let gate = DispatchSemaphore(value: 0)
      for i in 0..<2000 {
        // The thread has finished the previous closure: it is spinning or parked, both idle.
        while mgr.metrics().blockingThreadsBusy > 0 { sched_yield() }
        if i == 1000 { usleep(2000) }  // once, long enough for the thread to stop spinning and park
        try! mgr.taskDedicated {
          ran.wrappingAdd(1, ordering: .relaxed)
          gate.signal()
        }
        gate.wait()
      }
      submitted.tick()
    }
    await submitted.wait()
    #expect(ran.load(ordering: .relaxed) == 2000)
    #expect(mgr.metrics().blockingThreads == 1)
    await mgr.shutdownGracefully()
  }

  // Spawn requests a worker took as its batch must not wait behind that worker's long job while
  // another worker is idle: the idle one steals them. With both workers held, 20 requests queue
  // up; the first worker back takes the first 11 (a fair share), starts the first, which blocks
  // until the other 19 ran, 10 of them from its batch. A private batch ran them only after it.
  @Test func spawnBatchBehindABlockedWorker_isStolenByTheIdleOne() async throws {
    let mgr = try makeManager(workers: 2, prefix: "stealb")
    let gateA = try await holdAWorker(of: mgr)
    let gateB = try await holdAWorker(of: mgr)
    let n = 20
    let othersRan = Atomic<Int>(0)
    let sawAll = Atomic<Bool>(false)
    let firstDone = Countdown(1)
    let submitted = Countdown(1)
    Thread.detachNewThread {
      try! mgr.taskShared {
        // Blocks this worker, as a long job does.
        let all = eventuallyInChild(seconds: 20) { othersRan.load(ordering: .acquiring) == n - 1 }
        sawAll.store(all, ordering: .releasing)
        firstDone.tick()
      }
      for _ in 1..<n { try! mgr.taskShared { othersRan.wrappingAdd(1, ordering: .releasing) } }
      submitted.tick()
    }
    await submitted.wait()
    #expect(mgr.metrics().queuedSharedJobs >= n)
    gateA.open()
    gateB.open()
    await firstDone.wait()
    let ranMeanwhile = sawAll.load(ordering: .acquiring)
    #expect(ranMeanwhile, "requests behind the blocked first task ran meanwhile")
    await mgr.shutdownGracefully()
  }

  // A task resumed by a job that then runs long waits in that worker's LIFO slot; the idle
  // worker takes it (after `lifoStealNanos`) instead of leaving it there until the job ends.
  @Test func aJobInTheLIFOSlotBehindALongJob_isStolenByTheIdleWorker() async throws {
    let mgr = try makeManager(workers: 2, prefix: "steall")
    let parked = Locked<CheckedContinuation<Void, Never>?>(nil)
    let resumedRan = Atomic<Bool>(false)
    let done = Countdown(2)
    try mgr.taskShared {
      await withCheckedContinuation { c in parked.withLock { $0 = c } }
      resumedRan.store(true, ordering: .releasing)
      done.tick()
    }
    #expect(await eventually { parked.withLock { $0 != nil } })
    let ranMeanwhile = Atomic<Bool>(false)
    try mgr.taskShared {
      parked.withLock { $0!.resume() }  // from this worker: into its LIFO slot
      // A long job on this worker.
      let ran = eventuallyInChild(seconds: 20) { resumedRan.load(ordering: .acquiring) }
      ranMeanwhile.store(ran, ordering: .relaxed)
      done.tick()
    }
    await done.wait()
    let stolen = ranMeanwhile.load(ordering: .relaxed)
    #expect(stolen, "the resumed task ran while its worker was busy")
    await mgr.shutdownGracefully()
  }

  // Requests in a worker's batch are still queued work: counted in `queuedSharedJobs`.
  @Test func spawnBatch_countsAsQueuedSharedJobs() async throws {
    let mgr = try makeManager(workers: 1, prefix: "batchq")
    let gate = try await holdAWorker(of: mgr)
    let inner = Gate()
    let firstStarted = Countdown(1)
    let ran = Atomic<Int>(0)
    let submitted = Countdown(1)
    Thread.detachNewThread {
      try! mgr.taskShared {
        firstStarted.tick()
        inner.wait()
      }
      for _ in 0..<9 { try! mgr.taskShared { ran.wrappingAdd(1, ordering: .relaxed) } }
      submitted.tick()
    }
    await submitted.wait()
    gate.open()  // the worker takes all ten as its batch and blocks in the first
    await firstStarted.wait()
    #expect(mgr.metrics().queuedSharedJobs == 9)
    inner.open()
    await mgr.shutdownGracefully()
    #expect(ran.load(ordering: .relaxed) == 9)
  }

  // A task enqueuing far faster than the pool drains is slowed down (back-pressure) only while
  // the backlog shrinks: with the only other worker held, it must go on, not wait forever.
  @Test func producerBackPressure_givesUpWhenNobodyCanDrain() async throws {
    let mgr = try makeManager(workers: 2, prefix: "press")
    let gate = try await holdAWorker(of: mgr)  // one of the two
    let ran = Counter()
    let spawned = Countdown(1)
    try mgr.taskShared {
      await withDiscardingTaskGroup { group in
        for _ in 0..<50_000 { group.addTask { ran.add() } }
        spawned.tick()
      }
    }
    await spawned.wait()  // all 50k enqueued although the other worker drained nothing
    gate.open()
    #expect(await eventually { ran.count == 50_000 })
    await mgr.shutdownGracefully()
  }

  // A keep-alive at the end of the clock's range keeps idle threads parked (the park's
  // deadline, now + keep-alive, saturates instead of overflowing).
  @Test func blockingPool_hugeKeepAlive_keepsTheIdleThread() async throws {
    let mgr = try makeManager(workers: 1, maxBlocking: 4, keepAlive: .seconds(Int64.max), prefix: "forever")
    let done = Countdown(1)
    try mgr.taskDedicated { done.tick() }
    await done.wait()
    usleep(100_000)  // long past the spin: the thread has parked with that keep-alive
    #expect(mgr.metrics().blockingThreads == 1)
    #expect(threadsNamed("forever-b") == 1)
    await mgr.shutdownGracefully()
  }

  @Test func blockingPool_atTheCap_queuedWorkRunsInFIFOOrder() async throws {
    let mgr = try makeManager(workers: 1, maxBlocking: 1, prefix: "fifo")
    let order = Locked<[Int]>([])
    let gate = Gate()
    let started = Countdown(1)
    try mgr.taskDedicated { started.tick(); gate.wait() }
    await started.wait()
    for i in 0..<500 { try mgr.taskDedicated { order.withLock { $0.append(i) } } }
    #expect(mgr.metrics().queuedBlockingJobs == 500)
    gate.open()
    await mgr.shutdownGracefully()
    #expect(order.withLock { $0 } == Array(0..<500))
  }

  @Test func shutdown_runsAllQueuedWork_thenRejectsAndReleasesClosures() async throws {
    let mgr = try makeManager(workers: 1, maxBlocking: 1, prefix: "drain")
    let blockingGate = Gate()
    let ranShared = Atomic<Int>(0)
    let ranBlocking = Atomic<Int>(0)
    let sharedGate = try await holdAWorker(of: mgr)  // the single one: the rest stays queued
    for _ in 0..<10_000 { try mgr.taskShared { ranShared.wrappingAdd(1, ordering: .relaxed) } }
    let blockingStarted = Countdown(1)
    try mgr.taskDedicated { blockingStarted.tick(); blockingGate.wait() }
    await blockingStarted.wait()
    for _ in 0..<1_000 { try mgr.taskDedicated { ranBlocking.wrappingAdd(1, ordering: .relaxed) } }
    let m = mgr.metrics()
    #expect(m.queuedSharedJobs >= 10_000)
    #expect(m.queuedBlockingJobs == 1_000)

    let shutdown = Task { await mgr.shutdownGracefully() }
    // Admission closes at once, before the queues drain.
    #expect(await eventually { (try? mgr.taskDedicated {}) == nil })
    sharedGate.open()
    blockingGate.open()
    await shutdown.value
    #expect(ranShared.load(ordering: .relaxed) == 10_000)
    #expect(ranBlocking.load(ordering: .relaxed) == 1_000)

    let live = Counter()
    let ran = Atomic<Bool>(false)
    do {
      let p = Payload(live)
      #expect(throws: WasiThreadError.shutDown) { try mgr.taskShared { _ = p; ran.store(true, ordering: .relaxed) } }
      #expect(throws: WasiThreadError.shutDown) { try mgr.taskDedicated { _ = p; ran.store(true, ordering: .relaxed) } }
    }
    #expect(live.count == 0, "rejected closures are released")
    let didRun = ran.load(ordering: .relaxed)
    #expect(!didRun)
  }

  @Test func shutdown_returnsThreadsAndFdsToBaseline() async {
    await #expect(processExitsWith: .success) {
      await warmGlobalPool()
      let threads = threadCount()
      let fds = fdCount()
      let before = Set(fdTargets())
      do {
        let mgr = try makeManager(workers: 2, maxBlocking: 8, prefix: "base")
        for _ in 0..<1000 { try mgr.taskShared { await mgr.sleepNow(.milliseconds(1)) } }
        for _ in 0..<100 { try mgr.taskDedicated { usleep(100) } }
        require(threadCount() > threads, "threads were started")
        await mgr.shutdownGracefully()
      } catch {
        require(false, "unexpected \(error)")
      }
      require(threadsNamed("base-") == 0, "manager threads left: \(threadsNamed("base-"))")
      require(threadCount() <= threads, "threads \(threadCount()) > baseline \(threads)")
      require(fdCount() == fds, "fds \(fdCount()) != baseline \(fds): \(Set(fdTargets()).subtracting(before))")
    }
  }

  @Test func deinitWithoutShutdown_stopsAndJoinsThreads() async {
    await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      await warmGlobalPool()
      let threads = threadCount()
      let fds = fdCount()
      let before = Set(fdTargets())
      do {
        let mgr = try makeManager(workers: 2, prefix: "dropped")
        let done = Countdown(1)
        try mgr.taskShared { done.tick() }
        try mgr.taskDedicated {}
        await done.wait()
      } catch {
        require(false, "unexpected \(error)")
      }
      // Every thread of the manager is gone (the process's total can move with Swift's own
      // pool) and every fd it opened is closed.
      _ = threads
      let ok = eventuallyInChild { threadsNamed("dropped-") == 0 && fdCount() == fds }
      require(ok, "manager threads \(threadsNamed("dropped-")), fds \(fdCount()) vs \(fds): \(Set(fdTargets()).subtracting(before))")
    }
  }

  @Test func shutdown_isIdempotent_andSafeFromConcurrentCallers() async throws {
    let mgr = try makeManager(prefix: "many")
    let ran = Atomic<Int>(0)
    for _ in 0..<1000 { try mgr.taskShared { ran.wrappingAdd(1, ordering: .relaxed) } }
    await withTaskGroup(of: Void.self) { g in
      for _ in 0..<8 { g.addTask { await mgr.shutdownGracefully() } }
    }
    await mgr.shutdownGracefully()
    #expect(ran.load(ordering: .relaxed) == 1000)
  }

  @Test func concurrentShutdownCallers_eachReturnOnlyOnceTheTeardownIsDone() async throws {
    let mgr = try makeManager(prefix: "waitsd")
    let ran = Counter()
    // Work that takes a while to drain: every caller must wait for all of it, not only the first.
    for _ in 0..<200 {
      try mgr.taskShared {
        await mgr.sleepNow(.milliseconds(5))
        ran.add()
      }
    }
    for _ in 0..<50 { try mgr.taskDedicated { usleep(20_000); ran.add() } }
    let sawAtReturn = Locked<[(ran: Int, threads: Int)]>([])
    await withTaskGroup(of: Void.self) { g in
      for _ in 0..<8 {
        g.addTask {
          await mgr.shutdownGracefully()
          let threads = threadNames(startingWith: "waitsd-").filter { $0 != "waitsd-stop" }.count
          sawAtReturn.withLock { $0.append((ran.count, threads)) }
        }
      }
    }
    let seen = sawAtReturn.withLock { $0 }
    #expect(seen.count == 8)
    for s in seen {
      #expect(s.ran == 250)  // everything accepted had run
      #expect(s.threads == 0)  // workers, blocking threads and the reactor were joined
    }
  }

  @Test func shutdown_fromInsideASharedTask_doesNotDeadlock() async throws {
    let mgr = try makeManager(prefix: "inside")
    let returned = Countdown(1)
    try mgr.taskShared {
      await mgr.shutdownGracefully()
      returned.tick()
    }
    await returned.wait()
    #expect(throws: WasiThreadError.shutDown) { try mgr.taskShared {} }
    await mgr.shutdownGracefully()  // from outside: waits for the teardown started inside
  }

  @Test func shutdown_fromABlockingThread_doesNotDeadlock() async throws {
    let mgr = try makeManager(prefix: "insideB")
    let returned = Countdown(1)
    try mgr.taskDedicated {
      // A blocking thread reaches async code through spawnAndBlockOn; the shutdown it starts
      // cannot wait for this very closure, so it returns once admission is closed.
      _ = try? mgr.spawnAndBlockOn { await mgr.shutdownGracefully() }
      returned.tick()
    }
    await returned.wait()
    await mgr.shutdownGracefully()
  }

  @Test func spawnAndBlockOn_fromAPlainThread_returnsTheValue() async throws {
    let mgr = try makeManager(prefix: "sbo")
    let result: Int = await withCheckedContinuation { c in
      Thread.detachNewThread {
        let v = try? mgr.spawnAndBlockOn { () async -> Int in
          await mgr.sleepNow(.milliseconds(2))
          return currentThreadName().hasPrefix("sbo-w") ? 42 : -1
        }
        c.resume(returning: v ?? -2)
      }
    }
    #expect(result == 42)
    await mgr.shutdownGracefully()
  }

  @Test func spawnAndBlockOn_onAWorker_throwsInsteadOfDeadlocking() async throws {
    let mgr = try makeManager(workers: 1, prefix: "sbo2")
    let outcome = Locked<Result<Int, WasiThreadError>?>(nil)
    let done = Countdown(1)
    try mgr.taskShared {
      let r = Result { () throws(WasiThreadError) -> Int in try mgr.spawnAndBlockOn { 7 } }
      outcome.withLock { $0 = r }
      done.tick()
    }
    await done.wait()
    #expect(outcome.withLock { $0 } == .failure(.unsupported))
    // From a blocking thread it is allowed and works.
    let v = try await mgr.spawnAwait { try? mgr.spawnAndBlockOn { 9 } }
    #expect(v == 9)
    await mgr.shutdownGracefully()
  }

  @Test func spawnAwait_returnsTheResult_fromABlockingThread() async throws {
    let mgr = try makeManager(prefix: "await")
    let name = try await mgr.spawnAwait { currentThreadName() }
    #expect(name.hasPrefix("await-b"))
    await mgr.shutdownGracefully()
    await #expect(throws: WasiThreadError.shutDown) { try await mgr.spawnAwait { 1 } }
  }

  @Test func metrics_reportWorkersBlockingThreadsAndCounts() async throws {
    let mgr = try makeManager(workers: 3, maxBlocking: 2, prefix: "metrics")
    let gate = Gate()
    let started = Countdown(2)
    try mgr.taskDedicated { started.tick(); gate.wait() }
    try mgr.taskDedicated { started.tick(); gate.wait() }
    try mgr.taskDedicated {}
    await started.wait()
    var m = mgr.metrics()
    #expect(m.workerThreads == 3)
    #expect(m.blockingThreads == 2)
    #expect(m.blockingThreadsBusy == 2)
    #expect(m.queuedBlockingJobs == 1)
    gate.open()
    let done = Countdown(10)
    for _ in 0..<10 { try mgr.taskShared { done.tick() } }
    await done.wait()
    await mgr.shutdownGracefully()
    m = mgr.metrics()
    #expect(m.completedBlockingJobs == 3)
    #expect(m.completedSharedTasks == 10)
    #expect(m.completedSharedJobs >= 10)
    #expect(m.liveSharedTasks == 0)
    #expect(m.spawnFailures == 0)
  }

  @Test func liveSharedTasks_countsSuspendedTasks_andShutdownWaitsForThem() async throws {
    // Accepted tasks are counted by the submitting side and finished ones by the workers: the
    // difference is what shutdown waits for, from outside a task and from inside one.
    let mgr = try makeManager(workers: 2, prefix: "live")
    let started = Countdown(20)
    let release = Countdown(1)
    let finished = Counter()
    for i in 0..<20 {
      let body: @Sendable () async -> Void = {
        started.tick()
        await release.wait()
        finished.add()
      }
      if i % 2 == 0 {
        try mgr.taskShared(body)  // from outside any task: a spawn request
      } else {
        try await Task { try mgr.taskShared(body) }.value  // from inside a task
      }
    }
    await started.wait()
    var m = mgr.metrics()
    #expect(m.liveSharedTasks == 20)
    #expect(m.completedSharedTasks == 0)
    let shutdown = Task { await mgr.shutdownGracefully() }
    // Probe until admission is closed; the probes that got in are empty tasks.
    let probes = Counter()
    #expect(
      await eventually {
        guard (try? mgr.taskShared {}) != nil else { return true }
        probes.add()
        return false
      })
    #expect(await eventually { mgr.metrics().liveSharedTasks == 20 })  // the teardown waits for them
    release.tick()
    await shutdown.value
    #expect(finished.count == 20)
    m = mgr.metrics()
    #expect(m.liveSharedTasks == 0)
    #expect(m.completedSharedTasks == 20 + probes.count)
  }

  @Test func yieldLoop_onOneWorker_doesNotStarveQueuedWork() async throws {
    // Two jobs that keep waking each other (a task in a Task.yield() loop and the yield's
    // continuation job) must not monopolise the LIFO slot: the queued setter has to run.
    let mgr = try makeManager(workers: 1, prefix: "starve")
    let flag = Atomic<Bool>(false)
    let done = Countdown(1)
    try mgr.taskShared {
      try? mgr.taskShared { flag.store(true, ordering: .relaxed) }
      var spins = 0
      while !flag.load(ordering: .relaxed) && spins < 1_000_000 {
        await Task.yield()
        spins += 1
      }
      done.tick()
    }
    await done.wait()
    let set = flag.load(ordering: .relaxed)
    #expect(set)
    await mgr.shutdownGracefully()
  }

  @Test func threadParallelism_isTheProbeValue() throws {
    let mgr = try makeManager()
    #expect(try mgr.threadParallelism() == Parallelism.available())
  }

  @Test func threadParallelism_isNeverThePoolsSize() async throws {
    // A pool sized apart from the probe: the answer is still the CPUs, not the workers.
    let workers = Parallelism.available() + 3
    let mgr = try makeManager(workers: workers, prefix: "par7")
    #expect(mgr.metrics().workerThreads == workers)
    #expect(try mgr.threadParallelism() == Parallelism.available())
    await mgr.shutdownGracefully()
  }

  @Test func configurationDefaults_areTheDocumentedOnes() async throws {
    let c = ThreadPoolTaskManager.Configuration()
    #expect(c.workerThreads == nil)
    #expect(c.maxBlockingThreads == nil)
    #expect(c.blockingKeepAlive == .seconds(10))
    #expect(c.threadNamePrefix == "vtasks")
    let mgr = try ThreadPoolTaskManager(configuration: c)
    let p = Parallelism.available()
    #expect(mgr.metrics().workerThreads == p)
    #expect(mgr.core.blocking.maxThreads == max(200, 100 * p))
    #expect(mgr.core.blocking.keepAliveNanos == 10_000_000_000)
    await mgr.shutdownGracefully()
  }

  @Test func threadNames_areThePrefixDashRoleAndIndex() async throws {
    let mgr = try makeManager(workers: 3, prefix: "nmx")
    let ran = Countdown(2)
    let gate = Gate()
    // Two dedicated closures held at once: two blocking threads, -b0 and -b1.
    for _ in 0..<2 {
      try mgr.taskDedicated {
        ran.tick()
        gate.wait()
      }
    }
    await ran.wait()
    let names = threadNames(startingWith: "nmx-")
    gate.open()
    #expect(names == ["nmx-b0", "nmx-b1", "nmx-reactor", "nmx-w0", "nmx-w1", "nmx-w2"])
    await mgr.shutdownGracefully()
    #expect(threadNames(startingWith: "nmx-").allSatisfy { $0 == "nmx-stop" })
  }

  @Test func spawnAndBlockOn_afterShutdown_throwsShutDown_withoutRunning() async throws {
    let mgr = try makeManager(prefix: "sbosd")
    await mgr.shutdownGracefully()
    let ran = Counter()
    let outcome: Result<Int, WasiThreadError> = await withCheckedContinuation { c in
      // From a plain thread, as a caller of spawnAndBlockOn would be.
      Thread.detachNewThread {
        do throws(WasiThreadError) {
          c.resume(returning: .success(try mgr.spawnAndBlockOn { ran.add(); return 1 }))
        } catch {
          c.resume(returning: .failure(error))
        }
      }
    }
    #expect(outcome == .failure(.shutDown))
    #expect(ran.count == 0)
  }

  @Test func workerCount_defaultsToParallelism() async throws {
    let mgr = try ThreadPoolTaskManager()
    #expect(mgr.metrics().workerThreads == Parallelism.available())
    await mgr.shutdownGracefully()
  }

  @Test func taskExecutorPreference_runsUserTasksOnWorkers() async throws {
    let mgr = try makeManager(prefix: "pref")
    let name = await Task(executorPreference: mgr) { currentThreadName() }.value
    #expect(name.hasPrefix("pref-w"))
    await mgr.shutdownGracefully()
    // Jobs that reach a stopped pool run on Swift's global executor instead of being lost.
    let after = await Task(executorPreference: mgr) { 5 }.value
    #expect(after == 5)
  }
}

@Suite("Fault injection: refused threads")
struct FaultInjectionTests {
  @Test func refusedThreadDuringInit_throwsSpawnFailed_andLeavesNothing() async {
    for k in 1...3 {  // reactor, worker 0, worker 1
      await #expect(processExitsWith: .success) { [k = k as Int] in
        await warmGlobalPool()
        let threads = threadCount()
        let fds = fdCount()
        vt_testing_fail_thread_create_at(Int32(k), EAGAIN)
        do {
          _ = try makeManager(workers: 2, prefix: "initfail")
          require(false, "init succeeded although thread \(k) was refused")
        } catch let e as WasiThreadError {
          require(e == .spawnFailed(errno: EAGAIN), "got \(e)")
        } catch { require(false, "untyped \(error)") }
        vt_testing_fail_thread_create_at(0, 0)
        require(threadCount() == threads, "threads \(threadCount()) vs \(threads) at k=\(k)")
        require(fdCount() == fds, "fds \(fdCount()) vs \(fds) at k=\(k)")
      }
    }
  }

  @Test func refusedBlockingThread_withNoLiveThread_throwsSpawnFailed_andReleasesTheClosure() async {
    await #expect(processExitsWith: .success) {
      do {
        let mgr = try makeManager(workers: 1, prefix: "refuse")
        vt_testing_fail_all_thread_creates(EAGAIN)
        let live = Counter()
        var p: Payload? = Payload(live)
        do {
          try mgr.taskDedicated { [p] in _ = p }
          require(false, "accepted without a thread")
        } catch let e as WasiThreadError {
          require(e == .spawnFailed(errno: EAGAIN), "got \(e)")
        } catch { require(false, "untyped") }
        p = nil
        require(live.count == 0, "the refused closure was released")
        require(mgr.metrics().spawnFailures == 1, "spawnFailures \(mgr.metrics().spawnFailures)")
        require(mgr.metrics().queuedBlockingJobs == 0, "nothing left queued")
        vt_testing_fail_all_thread_creates(0)
        await mgr.shutdownGracefully()
      } catch { require(false, "\(error)") }
    }
  }

  @Test func refusedBlockingThread_withALiveThread_keepsWorkQueuedForIt() async {
    await #expect(processExitsWith: .success) {
      do {
        let mgr = try makeManager(workers: 1, maxBlocking: 8, prefix: "refuse2")
        let gate = Gate()
        let started = Countdown(1)
        try mgr.taskDedicated { started.tick(); gate.wait() }
        await started.wait()
        vt_testing_fail_all_thread_creates(EAGAIN)
        let ran = Atomic<Int>(0)
        for _ in 0..<5 { try mgr.taskDedicated { ran.wrappingAdd(1, ordering: .relaxed) } }
        require(mgr.metrics().spawnFailures == 5, "spawnFailures \(mgr.metrics().spawnFailures)")
        vt_testing_fail_all_thread_creates(0)
        gate.open()
        await mgr.shutdownGracefully()
        require(ran.load(ordering: .relaxed) == 5, "queued work ran on the live thread")
      } catch { require(false, "\(error)") }
    }
  }
}

@Suite("Blocking pool: start-now submits")
struct StartNowTests {
  @Test func taskDedicatedNow_atTheCap_throwsResourceExhausted_insteadOfQueueing() async throws {
    // A keep-alive no run reaches: the check below needs a thread idle, not retired. With the
    // default 10 s, a TSan run (a CI rehearsal, 2026-12-03: this test took 77 s, a trivial one 34 s,
    // their tasks waiting for the cooperative pool) first polled after both threads had retired,
    // and idle stayed 0 for the whole 60 s.
    let mgr = try makeManager(workers: 1, maxBlocking: 2, keepAlive: .seconds(3600), prefix: "now")
    let gate = Gate()
    let started = Countdown(2)
    try mgr.taskDedicatedNow { started.tick(); gate.wait() }
    try mgr.taskDedicatedNow { started.tick(); gate.wait() }
    await started.wait()
    let live = Counter()
    do {
      let p = Payload(live)
      #expect(throws: WasiThreadError.resourceExhausted) { try mgr.taskDedicatedNow { _ = p } }
    }
    #expect(live.count == 0, "the refused closure was released")
    #expect(mgr.metrics().queuedBlockingJobs == 0)
    try mgr.taskDedicated {}  // the queueing variant still accepts
    #expect(mgr.metrics().queuedBlockingJobs == 1)
    gate.open()
    // Once a thread is idle again, a start-now submit reuses it.
    #expect(await eventually { mgr.metrics().blockingThreadsIdle >= 1 })
    let ran = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Bool, any Error>) in
      do { try mgr.taskDedicatedNow { c.resume(returning: true) } } catch { c.resume(throwing: error) }
    }
    #expect(ran)
    await mgr.shutdownGracefully()
  }
}
