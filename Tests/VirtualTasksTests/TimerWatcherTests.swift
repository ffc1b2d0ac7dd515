import Foundation
import Synchronization
import Testing

@testable import VirtualTasks

/// The timer watcher's early wake-up: the margin it learns, and the claim that keeps the reactor's
/// timerfd from firing at the very deadline the watcher is spinning toward.
@Suite("Timer watcher: wake margin and deadline claims")
struct TimerWatcherTests {
  @Test func wakeMargin_settlesNearTheNinetiethPercentileOfItsWakeUps() {
    let margin = WakeMargin()
    // Lateness uniform over 0..<80 us (a seeded LCG): the 90th percentile is 72 us.
    var seed: UInt64 = 42
    for _ in 0..<20_000 {
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      margin.record(lateness: Int64((seed >> 33) % 80_000))
    }
    #expect(margin.nanoseconds >= 62_000 && margin.nanoseconds <= 82_000, "margin \(margin.nanoseconds)")
  }

  @Test func wakeMargin_shrinksOnAPreciseMachine_andStaysWithinItsBounds() {
    let margin = WakeMargin()
    for _ in 0..<1000 { margin.record(lateness: 500) }
    #expect(margin.nanoseconds == WakeMargin.minNanos)
    for _ in 0..<1000 { margin.record(lateness: 5_000_000) }
    #expect(margin.nanoseconds == WakeMargin.maxNanos)
    for _ in 0..<1000 { margin.record(lateness: -1_000_000) }  // a clock step: never below the floor
    #expect(margin.nanoseconds == WakeMargin.minNanos)
  }

  @Test func claimedDeadline_movesTheTimerfdToTheBackstop_andReleaseMovesItBack() async throws {
    // A reactor of its own, with no worker pool that could claim deadlines meanwhile.
    let reactor = try Reactor(threadName: "claim-reactor")
    func armed() -> Int64 { reactor.state.withLock { $0.armed } }
    func pending() -> Int { reactor.snapshot().pendingTimers }
    let deadline = Syscall.continuousNow() + 3_600_000_000_000  // far: no timing premise
    let sleeper = Task.detached { await reactor.sleep(untilNanoseconds: deadline) }
    #expect(await eventually { pending() == 1 })
    #expect(armed() == deadline)

    #expect(reactor.claimEarliest() == deadline)
    #expect(armed() == deadline + Reactor.watchGraceNanos)
    // A sooner sleep is not the watcher's: the timerfd goes to exactly its deadline.
    let sooner = deadline - 1_000_000_000
    let second = Task.detached { await reactor.sleep(untilNanoseconds: sooner) }
    #expect(await eventually { pending() == 2 })
    #expect(armed() == sooner)
    second.cancel()
    await second.value

    // Claimed again, then released (the watcher was woken for work): back to the deadline.
    #expect(reactor.claimEarliest() == deadline)
    reactor.releaseClaim()
    #expect(reactor.state.withLock { $0.watched } == 0)
    #expect(armed() <= deadline)  // at the cancelled sooner deadline (a harmless early fire) or ours
    reactor.releaseClaim()  // twice: nothing to do
    sleeper.cancel()
    await sleeper.value
    reactor.close()
  }

  @Test func workerFire_pushesANearBackstopLater_atMostOncePerHalfGracePeriod() async throws {
    // A reactor of its own; fires are driven by hand with chosen clock readings, far in the
    // future (no timing premise). A worker's fire (mayPoll: false) used to move the timerfd only
    // earlier: a stale target then woke the reactor thread for nothing every grace period.
    let reactor = try Reactor(threadName: "rearm-reactor")
    func armed() -> Int64 { reactor.state.withLock { $0.armed } }
    func pending() -> Int { reactor.snapshot().pendingTimers }
    let first = Syscall.continuousNow() + 3_600_000_000_000
    let second = first + 10_000_000
    let a = Task.detached { await reactor.sleep(untilNanoseconds: first) }
    #expect(await eventually { pending() == 1 })
    let b = Task.detached { await reactor.sleep(untilNanoseconds: second) }
    #expect(await eventually { pending() == 2 })
    #expect(armed() == first)
    a.cancel()  // lazily: the timerfd stays at `first`
    await a.value
    #expect(armed() == first)
    var buffer: [TimerPayload?] = []
    // The backstop is a whole millisecond away: left alone.
    _ = reactor.fireExpired(now: first - 1_000_000, buffer: &buffer)
    #expect(armed() == first)
    // Less than half a grace period away: moved to the next live deadline.
    _ = reactor.fireExpired(now: first - Reactor.watchGraceNanos / 4, buffer: &buffer)
    #expect(armed() == second)
    b.cancel()
    await b.value
    reactor.close()
  }

  @Test func claimWhileThePoolIsIdle_neverLosesTheDeadline() async throws {
    // End to end: an idle worker claims the deadline (the timerfd is its backstop), and the sleep
    // still ends, on time or later, never earlier.
    let mgr = try makeManager(workers: 1, prefix: "claimw")
    for _ in 0..<50 {
      let start = ContinuousClock.now
      await Task(executorPreference: mgr) { await mgr.sleepNow(.microseconds(700)) }.value
      #expect(ContinuousClock.now - start >= .microseconds(700))
    }
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  @Test func dueTimer_whileAnotherThreadHoldsTheFiringLock_costsTheWorkersNoBusyLoop() async throws {
    // A firer stalled with the firing lock held (preempted, or waiting for the reactor's lock
    // behind a preempted thread) must not turn the other workers' search into a busy loop: a due
    // timer they cannot fire is not work for them. They used to spin on it for as long as the
    // lock stayed held, keeping the CPU from the thread that held it (W5c: a 4 ms stall).
    let mgr = try makeManager(workers: 2, prefix: "stalled")
    let ran = Counter()
    let locked = Atomic<Bool>(false)
    let release = Atomic<Bool>(false)
    let firing = mgr.core.reactor.firing
    Thread.detachNewThread {
      firing.withLock { _ in
        locked.store(true, ordering: .releasing)
        while !release.load(ordering: .acquiring) { usleep(1000) }
      }
    }
    #expect(await eventually { locked.load(ordering: .acquiring) })
    try mgr.schedule(after: .zero) { ran.add() }  // due at once; only a firer can start it
    // Work for the workers, so that they are awake (searching) while the timer is due.
    for _ in 0..<4 { await Task(executorPreference: mgr) { await Task.yield() }.value }
    let before = cpuTicksOfThreads(named: "stalled-w")
    try await Task.sleep(for: .milliseconds(600))
    let used = cpuTicksOfThreads(named: "stalled-w") - before
    // A spinning worker would use about 60 ticks (10 ms each) here, each; parked ones next to none.
    #expect(used < 20, "the workers used \(used * 10) ms of CPU in 600 ms while the firing lock was held")
    #expect(ran.count == 0)
    release.store(true, ordering: .releasing)
    // Nothing lost: the callback runs once the lock is free.
    #expect(await eventually { ran.count == 1 })
    await mgr.shutdownGracefully()
  }

  @Test func singleDueCallback_firedByAWorker_wakesNoOtherWorker_butFromOutsideItDoes() async throws {
    // A worker that fires one due callback calls it next itself; only a fire from outside the
    // pool (the reactor thread) must wake a parked worker for it.
    let mgr = try makeManager(workers: 2, prefix: "duewake")
    let pool = mgr.core.workers
    let ran = Counter()
    let onWorker: (parked: Bool, woken: Int) = await Task(executorPreference: mgr) {
      // The other worker parks; this one is running this job (not searching).
      guard eventuallyInChild({ pool.parkedWorkers == 1 }) else { return (false, 0) }
      let before = pool.wakeUps.load(ordering: .relaxed)
      try! mgr.core.admitShared()
      mgr.startDue([.call { ran.add() }])
      return (true, pool.wakeUps.load(ordering: .relaxed) - before)
    }.value
    #expect(onWorker.parked)
    #expect(onWorker.woken == 0, "a single due callback fired by a worker woke \(onWorker.woken) worker(s)")
    #expect(await eventually { ran.count == 1 })

    #expect(await eventually { pool.parkedWorkers == 2 })
    let before = pool.wakeUps.load(ordering: .relaxed)
    try mgr.core.admitShared()
    mgr.startDue([.call { ran.add() }])  // from this thread, outside the pool
    #expect(pool.wakeUps.load(ordering: .relaxed) - before == 1)
    #expect(await eventually { ran.count == 2 })
    await mgr.shutdownGracefully()
  }

  @Test func claimAfterClose_isNil_andReleaseIsHarmless() async throws {
    let mgr = try makeManager(workers: 1, prefix: "claimc")
    await mgr.shutdownGracefully()
    #expect(mgr.core.reactor.claimEarliest() == nil)
    mgr.core.reactor.releaseClaim()
  }

  @Test func dueSleep_whileTheOnlyWorkerIsBusy_isFiredByItBetweenJobs() async throws {
    // The only worker never parks: a child task keeps it busy with a yield loop while its parent
    // sleeps. The sleeps that fall due meanwhile are fired by that worker between two of its
    // jobs (the reactor's timerfd is only the backstop then). Every job stays on the worker's own
    // queues, so this does not depend on how often it looks at the shared ones.
    let mgr = try makeManager(workers: 1, prefix: "drive")
    let state = LoopState()
    let before = mgr.core.workers.timersFiredByWorkers.load(ordering: .relaxed)
    let early = await Task(executorPreference: mgr) {
      await withTaskGroup(of: Void.self) { group in
        group.addTask {
          while !state.flag.load(ordering: .relaxed) {
            state.spins.add(1, ordering: .relaxed)
            await Task.yield()
          }
        }
        while state.spins.load(ordering: .relaxed) == 0 { await Task.yield() }
        var early = 0
        for _ in 0..<20 {
          let start = ContinuousClock.now
          await mgr.sleepNow(.microseconds(300))
          if ContinuousClock.now - start < .microseconds(300) { early += 1 }
        }
        state.flag.store(true, ordering: .relaxed)
        return early
      }
    }.value
    let fired = mgr.core.workers.timersFiredByWorkers.load(ordering: .relaxed) - before
    #expect(early == 0)
    // At least one (not all 20: a preempted worker may leave one to the backstop).
    #expect(fired >= 1, "fired by the worker: \(fired) of 20")
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  @Test func yieldLoopOnTheOnlyWorker_doesNotStarveWorkFromOutside() async throws {
    // Jobs from outside the pool wait in the injection queue; a worker whose own queue never
    // empties (a yield loop) still takes one every `sharedQueueInterval` jobs.
    let mgr = try makeManager(workers: 1, prefix: "fair")
    let state = LoopState()
    let loop = Task(executorPreference: mgr) {
      while !state.flag.load(ordering: .relaxed) && state.spins.load(ordering: .relaxed) < 2_000_000 {
        state.spins.add(1, ordering: .relaxed)
        await Task.yield()
      }
    }
    #expect(await eventually { state.spins.load(ordering: .relaxed) > 0 })
    // From the test's own task (not a worker): the first job goes to the injection queue.
    await Task(executorPreference: mgr) { state.flag.store(true, ordering: .relaxed) }.value
    await loop.value
    #expect(state.spins.load(ordering: .relaxed) < 2_000_000, "the outside job ran while the loop spun")
    await mgr.shutdownGracefully()
  }
}

private final class LoopState: Sendable {
  let flag = Atomic<Bool>(false)
  let spins = Atomic<Int>(0)
}
