import CShims
import Testing

@testable import VirtualTasks

/// Whether the calling code runs inside a Swift task.
private func inTask() -> Bool { withUnsafeCurrentTask { $0 != nil } }

@Suite("Scheduled callbacks: schedule(after:) / schedule(at:)")
struct ScheduledCallbackTests {
  @Test func calledAfterItsDelay_onAWorker_neverEarly_withNoTask() async throws {
    let mgr = try makeManager(prefix: "cbk")
    let start = ContinuousClock.now
    let result = Locked<(elapsed: Duration, thread: String, inTask: Bool)?>(nil)
    let done = Countdown(1)
    let completedBefore = mgr.metrics().completedSharedTasks
    try mgr.schedule(after: .milliseconds(20)) {
      result.withLock { $0 = (ContinuousClock.now - start, currentThreadName(), inTask()) }
      done.tick()
    }
    #expect(mgr.metrics().pendingTimers == 1)
    #expect(mgr.metrics().liveSharedTasks == 1)  // accepted: counted as shared work until it ran
    await done.wait()
    let r = try #require(result.withLock { $0 })
    #expect(r.elapsed >= .milliseconds(20))
    #expect(r.thread.hasPrefix("cbk-w"))
    #expect(!r.inTask)  // no Swift task was created for it
    #expect(await eventually { mgr.metrics().liveSharedTasks == 0 })
    #expect(mgr.metrics().completedSharedTasks == completedBefore + 1)
    await mgr.shutdownGracefully()
  }

  @Test func at_aDeadline_neverEarly() async throws {
    let mgr = try makeManager(prefix: "cbkat")
    let deadline = ContinuousClock.now + .milliseconds(15)
    let called = Locked<ContinuousClock.Instant?>(nil)
    let done = Countdown(1)
    try mgr.schedule(at: deadline) {
      called.withLock { $0 = ContinuousClock.now }
      done.tick()
    }
    await done.wait()
    #expect(try #require(called.withLock { $0 }) >= deadline)
    await mgr.shutdownGracefully()
  }

  @Test func cancelledBeforeDue_neverCalled_andFreedAtOnce() async throws {
    let mgr = try makeManager(prefix: "cbkcn")
    let n = 1000
    let called = Counter()
    let released = Counter()
    var handles: [ScheduledTask] = []
    for _ in 0..<n {
      let probe = ReleaseProbe(released)
      handles.append(try mgr.schedule(after: .seconds(3600)) { withExtendedLifetime(probe) { called.add() } })
    }
    #expect(mgr.metrics().pendingTimers == n)
    #expect(mgr.metrics().liveSharedTasks == n)
    #expect(released.count == 0)
    #expect(handles.filter { $0.cancel() }.count == n)
    // At once, not at the deadline: the timers, the closures and the shared-work count.
    #expect(mgr.metrics().pendingTimers == 0)
    #expect(mgr.metrics().liveSharedTasks == 0)
    #expect(released.count == n)
    #expect(handles.allSatisfy { !$0.cancel() })  // a second cancel removes nothing
    await mgr.shutdownGracefully()
    #expect(called.count == 0)
  }

  @Test func zeroOrNegativeDelay_isCalledSoon_onAWorker_notByTheCaller_andHugeDelaySaturates() async throws {
    let mgr = try makeManager(prefix: "cbkzr")
    let threads = Locked<[String]>([])
    let done = Countdown(2)
    let caller = currentThreadName()
    let zero = try mgr.schedule(after: .zero) {
      threads.withLock { $0.append(currentThreadName()) }
      done.tick()
    }
    let negative = try mgr.schedule(after: .seconds(-5)) {
      threads.withLock { $0.append(currentThreadName()) }
      done.tick()
    }
    await done.wait()
    let names = threads.withLock { $0 }
    #expect(names.count == 2 && names.allSatisfy { $0.hasPrefix("cbkzr-w") && $0 != caller })
    #expect(!zero.cancel())
    #expect(!negative.cancel())
    let called = Counter()
    let huge = try mgr.schedule(after: .seconds(Int64.max)) { called.add() }
    #expect(mgr.metrics().pendingTimers == 1)
    #expect(huge.cancel())
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
    #expect(called.count == 0)
  }

  @Test func equalDeadlines_callbacksAndTasks_runInSubmissionOrder() async throws {
    let mgr = try makeManager(workers: 1, prefix: "cbkor")  // one worker: start order is run order
    let n = 600
    let deadline = ContinuousClock.now + .milliseconds(30)
    let order = Locked<[Int]>([])
    let done = Countdown(n)
    for i in 0..<n {
      // The last third is submitted after the deadline passed: still after the others.
      if i == 2 * n / 3 { while ContinuousClock.now < deadline {} }
      if i % 3 == 0 {
        try mgr.taskShared(at: deadline) {
          order.withLock { $0.append(i) }
          done.tick()
        }
      } else {
        try mgr.schedule(at: deadline) {
          order.withLock { $0.append(i) }
          done.tick()
        }
      }
    }
    await done.wait()
    #expect(order.withLock { $0 } == Array(0..<n))
    await mgr.shutdownGracefully()
  }

  @Test func aBurstDueWhileTheWorkerIsBusy_waitsInTheDueQueue_thenAllAreCalledInOrder() async throws {
    let mgr = try makeManager(workers: 1, prefix: "cbkburst")
    let gate = try await holdAWorker(of: mgr)
    let n = 1000
    let order = Locked<[Int]>([])
    let done = Countdown(n)
    let deadline = ContinuousClock.now + .milliseconds(2)
    for i in 0..<n {
      try mgr.schedule(at: deadline) {
        order.withLock { $0.append(i) }
        done.tick()
      }
    }
    #expect(await eventually { mgr.metrics().pendingTimers == 0 })
    #expect(await eventually { mgr.core.workers.queuedDue == n })
    #expect(mgr.metrics().queuedSharedJobs >= n)
    #expect(mgr.metrics().liveSharedTasks == n + 1)  // the callbacks and the task holding the worker
    gate.open()
    await done.wait()
    #expect(order.withLock { $0 } == Array(0..<n))
    #expect(mgr.core.workers.queuedDue == 0)
    #expect(await eventually { mgr.metrics().liveSharedTasks == 0 })
    await mgr.shutdownGracefully()
  }

  @Test func aLongBurst_isSharedByTheWorkers() async throws {
    // 40 ms of due callbacks: both workers call some (a burst does not wait on one worker).
    let mgr = try makeManager(workers: 2, prefix: "cbkshare")
    let n = 400
    let threads = Locked<Set<String>>([])
    let done = Countdown(n)
    let deadline = ContinuousClock.now + .milliseconds(5)
    for _ in 0..<n {
      try mgr.schedule(at: deadline) {
        threads.withLock { _ = $0.insert(currentThreadName()) }
        let until = ContinuousClock.now + .microseconds(100)
        while ContinuousClock.now < until {}  // 40 ms of callbacks in all
        done.tick()
      }
    }
    await done.wait()
    #expect(threads.withLock { $0 } == ["cbkshare-w0", "cbkshare-w1"])
    await mgr.shutdownGracefully()
  }

  @Test(.timeLimit(.minutes(2)))
  func pendingAtShutdown_areCalledAtOnce_andShutdownWaitsForThem() async throws {
    let mgr = try makeManager(prefix: "cbksd")
    let n = 200
    let called = Counter()
    let start = ContinuousClock.now
    for _ in 0..<n {
      try mgr.schedule(after: .seconds(3600)) { called.add() }
    }
    #expect(mgr.metrics().liveSharedTasks == n)
    await mgr.shutdownGracefully()
    #expect(called.count == n)  // accepted means run
    #expect(ContinuousClock.now - start < .seconds(3600))
  }

  @Test func afterShutdown_throwsShutDown_andReleasesTheClosureUncalled() async throws {
    let mgr = try makeManager(prefix: "cbkaf")
    await mgr.shutdownGracefully()
    let released = Counter()
    let called = Counter()
    let probe = ReleaseProbe(released)
    #expect(throws: WasiThreadError.shutDown) {
      try mgr.schedule(after: .milliseconds(1)) { withExtendedLifetime(probe) { called.add() } }
    }
    #expect(throws: WasiThreadError.shutDown) {
      try mgr.schedule(at: .now) { withExtendedLifetime(probe) { called.add() } }
    }
    _ = consume probe
    #expect(released.count == 1)
    #expect(called.count == 0)
  }

  @Test func pending_keepsAnUnreferencedManagerAlive_untilItIsDue() async throws {
    let called = Locked<Duration?>(nil)
    let start = ContinuousClock.now
    do {
      let mgr = try makeManager(prefix: "cbklv")
      try mgr.schedule(after: .milliseconds(40)) {
        called.withLock { $0 = ContinuousClock.now - start }
      }
    }  // the last reference is gone: a shutdown now would call it early
    #expect(await eventually { called.withLock { $0 } != nil })
    #expect(try #require(called.withLock { $0 }) >= .milliseconds(40))
  }

  @Test func cancellationRacingExpiry_eachIsCalledOrCancelled_neverBoth() async throws {
    let mgr = try makeManager(prefix: "cbkrc")
    try await expectCancellationRacingExpiry(on: mgr) { delay, body throws(WasiThreadError) in
      try mgr.schedule(after: delay, body)
    }
  }
}
