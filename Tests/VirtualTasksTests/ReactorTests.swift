import CShims
import Foundation
import Synchronization
import Testing

@testable import VirtualTasks

@Suite("Reactor: sleepNow, timers, fd readiness")
struct ReactorTests {
  @Test func sleep_firesOnAPlainThread_viaSpawnAndBlockOn_neverEarly() async throws {
    let mgr = try makeManager(prefix: "plain")
    let elapsed: Duration = await withCheckedContinuation { c in
      Thread.detachNewThread {
        let start = ContinuousClock.now
        _ = try? mgr.spawnAndBlockOn { await mgr.sleepNow(.milliseconds(30)) }
        c.resume(returning: ContinuousClock.now - start)
      }
    }
    #expect(elapsed >= .milliseconds(30))
    await mgr.shutdownGracefully()
  }

  @Test func sleep_firesFromATaskOnSwiftsDefaultExecutor() async throws {
    let mgr = try makeManager(prefix: "deflt")
    let elapsed = await Task.detached {
      let start = ContinuousClock.now
      await mgr.sleepNow(.milliseconds(25))
      return ContinuousClock.now - start
    }.value
    #expect(elapsed >= .milliseconds(25))
    await mgr.shutdownGracefully()
  }

  @Test func tenThousandSleeps_cancelled_freeTheirTimersAtOnce_andRunNothingOnThePools() async throws {
    let mgr = try makeManager(prefix: "cancel")
    let registered = Countdown(10_000)
    let group = Task.detached {
      await withTaskGroup(of: Void.self) { g in
        for _ in 0..<10_000 {
          g.addTask {
            registered.tick()
            await mgr.sleepNow(.seconds(3600))
          }
        }
      }
    }
    await registered.wait()
    #expect(await eventually { mgr.metrics().pendingTimers == 10_000 })
    let start = ContinuousClock.now
    group.cancel()
    await group.value
    #expect(ContinuousClock.now - start < .seconds(600), "cancelled hour-long sleeps returned")
    let m = mgr.metrics()
    #expect(m.pendingTimers == 0, "timers are freed at cancellation, not at their deadlines")
    #expect(m.completedSharedJobs == 0, "no job ran on the workers")
    #expect(m.completedBlockingJobs == 0 && m.blockingThreads == 0, "no thread hop")
    await mgr.shutdownGracefully()
  }

  @Test func zeroAndNegativeDurations_yieldOnce_andReturn() async throws {
    let mgr = try makeManager(workers: 1, prefix: "zero")
    for d in [Duration.zero, .seconds(-1), .nanoseconds(-1), .seconds(Int64.min)] {
      let order = Locked<[String]>([])
      let done = Countdown(2)
      try mgr.taskShared {
        order.withLock { $0.append("A1") }
        try? mgr.taskShared {
          order.withLock { $0.append("B") }
          done.tick()
        }
        await mgr.sleepNow(d)  // yields: B (queued on this single worker) runs first
        order.withLock { $0.append("A2") }
        done.tick()
      }
      await done.wait()
      #expect(order.withLock { $0 } == ["A1", "B", "A2"], "duration \(d)")
    }
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  @Test func zeroAndNegativeDurations_costExactlyOneYield_countedInJobs() async throws {
    // The order test above shows a yield happened; this one counts them: the jobs a task runs on
    // the workers grow with each suspension, so a task that sleeps 0 must cost exactly what a
    // task with one Task.yield() costs, not more.
    let mgr = try makeManager(workers: 1, prefix: "yield1")
    func jobsFor(_ body: @escaping @Sendable () async -> Void) async throws -> Int {
      let before = await settledJobs(mgr)
      let done = Countdown(1)
      try mgr.taskShared {
        await body()
        done.tick()
      }
      await done.wait()
      #expect(await eventually { mgr.metrics().liveSharedTasks == 0 })
      return await settledJobs(mgr) - before
    }
    let none = try await jobsFor {}
    let one = try await jobsFor { await Task.yield() }
    let two = try await jobsFor {
      await Task.yield()
      await Task.yield()
    }
    // Each yield costs the same number of jobs: two with Swift 6.3, in a taskShared body as in a
    // plain Task(executorPreference:) (Task.yield enqueues a continuation job, which then
    // enqueues the task); a sleepNow(d > 0) resumption costs one.
    #expect(none < one && two - one == one - none, "the job count must see each yield: \(none), \(one), \(two)")
    for d in [Duration.zero, .nanoseconds(-1), .seconds(-1), .seconds(Int64.min)] {
      #expect(try await jobsFor { await mgr.sleepNow(d) } == one, "duration \(d)")
    }
    await mgr.shutdownGracefully()
  }

  /// `completedSharedJobs` once it stops moving (a job is counted just after it returns).
  private func settledJobs(_ mgr: ThreadPoolTaskManager) async -> Int {
    var last = mgr.metrics().completedSharedJobs
    while true {
      try? await Task.sleep(for: .milliseconds(20))
      let now = mgr.metrics().completedSharedJobs
      if now == last { return now }
      last = now
    }
  }

  @Test func hugeDuration_thenCancel_doesNotTrap() async throws {
    let mgr = try makeManager(prefix: "huge")
    for d in [Duration.seconds(Int64.max), .seconds(Int64.max / 2), Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999)] {
      let t = Task.detached { await mgr.sleepNow(d) }
      #expect(await eventually { mgr.metrics().pendingTimers == 1 })
      t.cancel()
      await t.value
      #expect(mgr.metrics().pendingTimers == 0)
    }
    await mgr.shutdownGracefully()
  }

  @Test func tenThousandConcurrentSleeps_noneEarly() async throws {
    let mgr = try makeManager(workers: 2, prefix: "mass")
    let early = Atomic<Int>(0)
    let done = Countdown(10_000)
    for i in 0..<10_000 {
      try mgr.taskShared {
        let d = Duration.microseconds((i * 7919) % 20_001)  // 0..20 ms
        let start = ContinuousClock.now
        await mgr.sleepNow(d)
        if ContinuousClock.now - start < d { early.wrappingAdd(1, ordering: .relaxed) }
        done.tick()
      }
    }
    await done.wait()
    #expect(early.load(ordering: .relaxed) == 0)
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  // Deadlines a fraction of a microsecond apart: the reactor thread polls the clock for them
  // instead of re-arming its timerfd each time. None may fire early, and once they are done a
  // later sleep must still be armed and fire (the reactor left polling).
  @Test func denselyPackedDeadlines_noneEarly_thenALaterSleepStillFires() async throws {
    let mgr = try makeManager(workers: 2, prefix: "dense")
    let n = 20_000
    let early = Atomic<Int>(0)
    let done = Countdown(n)
    let base = Syscall.continuousNow() + 20_000_000  // 20 ms from now
    for i in 0..<n {
      try mgr.taskShared {
        let deadline = base + Int64(i) * 100  // 20k deadlines over 2 ms
        await mgr.core.reactor.sleep(untilNanoseconds: deadline)
        if Syscall.continuousNow() < deadline { early.wrappingAdd(1, ordering: .relaxed) }
        done.tick()
      }
    }
    await done.wait()
    #expect(early.load(ordering: .relaxed) == 0)
    #expect(mgr.metrics().pendingTimers == 0)
    let later = Countdown(1)
    let elapsed = Locked<Duration>(.zero)
    try mgr.taskShared {
      let start = ContinuousClock.now
      await mgr.sleepNow(.milliseconds(30))
      elapsed.withLock { $0 = ContinuousClock.now - start }
      later.tick()
    }
    await later.wait()
    #expect(elapsed.withLock { $0 } >= .milliseconds(30))
    await mgr.shutdownGracefully()
  }

  // A task on manager A sleeping with manager B's sleepNow is resumed by B's reactor thread
  // into A's pool (not into B's, and not lost in B's resume batch).
  @Test func sleepOnAnotherManagersReactor_resumesOnTheTasksOwnWorkers() async throws {
    let a = try makeManager(workers: 1, prefix: "ownA")
    let b = try makeManager(workers: 1, prefix: "ownB")
    let names = Locked<[String]>([])
    let done = Countdown(100)
    for _ in 0..<100 {
      try a.taskShared {
        await b.sleepNow(.microseconds(200))
        names.withLock { $0.append(currentThreadName()) }
        done.tick()
      }
    }
    await done.wait()
    #expect(names.withLock { $0.allSatisfy { $0.hasPrefix("ownA-w") } })
    await a.shutdownGracefully()
    await b.shutdownGracefully()
  }

  @Test func equalDeadlines_resumeInSubmissionOrder() async throws {
    let mgr = try makeManager(workers: 1, prefix: "fifo")
    let n = 1000
    // A far deadline, the same for all: no timing premise, however loaded the machine is.
    let deadline = Syscall.continuousNow() + 3_600_000_000_000
    let order = Locked<[Int]>([])
    let done = Countdown(n)
    for i in 0..<n {
      try mgr.taskShared {
        await mgr.core.reactor.sleep(untilNanoseconds: deadline)
        order.withLock { $0.append(i) }
        done.tick()
      }
    }
    #expect(await eventually { mgr.metrics().pendingTimers == n })
    // Fire as the reactor thread would when the timerfd expires at the deadline.
    var buffer: [TimerPayload?] = []
    mgr.core.reactor.fireExpired(now: deadline, buffer: &buffer)
    await done.wait()
    #expect(order.withLock { $0 } == Array(0..<n))
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  @Test func cancellationRacingExpiry_everySleepResumesExactlyOnce() async throws {
    let mgr = try makeManager(prefix: "race")
    let resumed = Counter()
    let perStream = 25_000  // 4 streams: 100k races
    await withTaskGroup(of: Void.self) { g in
      for stream in 0..<4 {
        g.addTask {
          for i in 0..<perStream {
            let d = Duration.microseconds(20 + (i + stream) % 60)
            let t = Task.detached {
              await mgr.sleepNow(d)  // debug builds use checked continuations: a double resume traps
              resumed.add()
            }
            let spinUntil = ContinuousClock.now + .microseconds((i * 13) % 80)
            while ContinuousClock.now < spinUntil {}
            t.cancel()
            await t.value
          }
        }
      }
    }
    #expect(resumed.count == 4 * perStream)
    #expect(mgr.metrics().pendingTimers == 0)
    await mgr.shutdownGracefully()
  }

  @Test func sleepPendingAtShutdown_returns_andSleepAfterShutdownReturnsAtOnce() async throws {
    let mgr = try makeManager(prefix: "sdown")
    let started = Countdown(1)
    let finished = Countdown(1)
    try mgr.taskShared {
      started.tick()
      await mgr.sleepNow(.seconds(3600))
      finished.tick()
    }
    await started.wait()
    #expect(await eventually { mgr.metrics().pendingTimers == 1 })
    let t0 = ContinuousClock.now
    await mgr.shutdownGracefully()
    await finished.wait()
    #expect(ContinuousClock.now - t0 < .seconds(600), "an hour-long sleep returned at shutdown")
    let t1 = ContinuousClock.now
    await mgr.sleepNow(.seconds(3600))
    #expect(ContinuousClock.now - t1 < .seconds(600), "an hour-long sleep after shutdown returned")
  }

  // MARK: readiness

  private func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    let r = vt_pipe(&fds)
    precondition(r == 0)
    return (fds[0], fds[1])
  }

  @Test func readable_afterAWriteFromAnotherThread() async throws {
    let mgr = try makeManager(prefix: "ready")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let waiting = Countdown(1)
    let got = Task.detached { () -> Int in
      waiting.tick()
      try await mgr.readable(r)
      var byte: UInt8 = 0
      return read(r, &byte, 1)
    }
    await waiting.wait()
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    Thread.detachNewThread {
      var b: UInt8 = 7
      _ = write(w, &b, 1)
    }
    #expect(try await got.value == 1)
    #expect(mgr.metrics().registeredFDs == 0)
    try await mgr.writable(w)  // an empty pipe is writable at once
    await mgr.shutdownGracefully()
  }

  @Test func sameFdWaitedTwice_bothWake() async throws {
    let mgr = try makeManager(prefix: "twice")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let a = Task.detached { try await mgr.readable(r) }
    let b = Task.detached { try await mgr.readable(r) }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 && mgr.core.reactor.state.withLock { $0.fds[r]?.waiters.count } == 2 })
    var byte: UInt8 = 1
    _ = write(w, &byte, 1)
    try await a.value
    try await b.value
    await mgr.shutdownGracefully()
  }

  @Test(.timeLimit(.minutes(1))) func writable_onAFullPipe_waitsUntilAReadMakesRoom() async throws {
    let mgr = try makeManager(prefix: "wfull")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    _ = fcntl(w, F_SETFL, fcntl(w, F_GETFL) | O_NONBLOCK)
    var chunk = [UInt8](repeating: 1, count: 4096)
    var filled = 0
    while true {
      let n = write(w, &chunk, chunk.count)
      if n <= 0 { break }
      filled += n
    }
    #expect(errno == EAGAIN && filled > 0)
    let woke = Counter()
    let t = Task.detached {
      try await mgr.writable(w)
      woke.add()
    }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    #expect(woke.count == 0)  // still full: no wake-up yet
    // Drain from another thread: room to write, and the waiter wakes.
    let toDrain = filled
    Thread.detachNewThread {
      var sink = [UInt8](repeating: 0, count: 65536)
      var left = toDrain
      while left > 0 {
        let n = read(r, &sink, min(left, sink.count))
        if n <= 0 { break }
        left -= n
      }
    }
    try await t.value
    #expect(woke.count == 1)
    #expect(write(w, &chunk, 1) == 1)
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test(.timeLimit(.minutes(1))) func readerAndWriterOnOneSocket_eachWakesForItsOwnEvent() async throws {
    let mgr = try makeManager(prefix: "rwsock")
    var pair: [Int32] = [0, 0]
    #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
    let (a, b) = (pair[0], pair[1])
    defer { close(a); close(b) }
    let readerWoke = Counter()
    let reader = Task.detached {
      try await mgr.readable(a)
      readerWoke.add()
    }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    // The socket is writable at once: that wait ends, the reader's stays registered.
    try await mgr.writable(a)
    #expect(readerWoke.count == 0)
    let waiters = mgr.core.reactor.state.withLock { $0.fds[a]?.waiters.count }
    #expect(waiters == 1)
    var byte: UInt8 = 9
    #expect(write(b, &byte, 1) == 1)
    try await reader.value
    #expect(readerWoke.count == 1)
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test(.timeLimit(.minutes(1))) func oneOfTwoWaitersCancelled_theOtherStillWakes() async throws {
    let mgr = try makeManager(prefix: "cancel1")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let a = Task.detached { try await mgr.readable(r) }
    let b = Task.detached { try await mgr.readable(r) }
    #expect(await eventually { mgr.core.reactor.state.withLock { $0.fds[r]?.waiters.count } == 2 })
    a.cancel()
    await #expect(throws: CancellationError.self) { try await a.value }
    // Still watched for the other waiter (re-armed, not removed).
    #expect(mgr.core.reactor.state.withLock { $0.fds[r]?.waiters.count } == 1)
    var byte: UInt8 = 1
    _ = write(w, &byte, 1)
    try await b.value
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test func readinessWait_onARegularFile_throwsEPERM_andWritableOnAClosedFdEBADF() async throws {
    let mgr = try makeManager(prefix: "eperm")
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("vt-eperm-\(getpid())").path
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    #expect(fd >= 0)
    defer { close(fd); unlink(path) }
    await #expect(throws: WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: EPERM)) {
      try await mgr.readable(fd)
    }
    await #expect(throws: WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: EPERM)) {
      try await mgr.writable(fd)
    }
    await #expect(throws: WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: EBADF)) {
      try await mgr.writable(999_999)
    }
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test func readinessWait_cancelled_throwsCancellation_andDeregisters() async throws {
    let mgr = try makeManager(prefix: "rcancel")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let t = Task.detached { try await mgr.readable(r) }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    t.cancel()
    await #expect(throws: CancellationError.self) { try await t.value }
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test func readinessWait_onAClosedFd_throwsEBADF() async throws {
    let mgr = try makeManager(prefix: "ebadf")
    // An fd number far above anything open (a just-closed number could be reused at once by a
    // test running in parallel).
    let notOpen: Int32 = 999_999
    await #expect(throws: WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: EBADF)) {
      try await mgr.readable(notOpen)
    }
    await #expect(throws: WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: EBADF)) {
      try await mgr.readable(-1)
    }
    #expect(mgr.metrics().registeredFDs == 0)
    await mgr.shutdownGracefully()
  }

  @Test func hangUp_countsAsReadiness() async throws {
    let mgr = try makeManager(prefix: "hup")
    let (r, w) = makePipe()
    defer { close(r) }
    let t = Task.detached { try await mgr.readable(r) }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    close(w)  // the reader sees EPOLLHUP: ready, and read() then returns 0 (end of file)
    try await t.value
    var byte: UInt8 = 0
    #expect(read(r, &byte, 1) == 0)
    await mgr.shutdownGracefully()
  }

  @Test func readinessWait_pendingAtShutdown_throwsShutDown_andAfterShutdownToo() async throws {
    let mgr = try makeManager(prefix: "rsd")
    let (r, w) = makePipe()
    defer { close(r); close(w) }
    let t = Task.detached { try await mgr.readable(r) }
    #expect(await eventually { mgr.metrics().registeredFDs == 1 })
    await mgr.shutdownGracefully()
    await #expect(throws: WasiThreadError.shutDown) { try await t.value }
    await #expect(throws: WasiThreadError.shutDown) { try await mgr.readable(r) }
  }

  @Test func reactorAndWorkers_runWithOneNanosecondTimerSlack() async throws {
    // The kernel's default 50 us slack would make every timed wait up to 50 us late.
    let mgr = try makeManager(prefix: "slack")
    #expect(await eventually { threadsNamed("slack-w") == 2 && threadsNamed("slack-reactor") == 1 })
    for tid in threadIDs(named: "slack-w") + threadIDs(named: "slack-reactor") {
      let slack = (try? String(contentsOfFile: "/proc/\(tid)/timerslack_ns", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)
      #expect(slack == "1", "thread \(tid)")
    }
    await mgr.shutdownGracefully()
  }

  @Test func reactorFds_areCloexec() throws {
    let mgr = try makeManager(prefix: "cloexec")
    let reactor = mgr.core.reactor
    for fd in [reactor.epollFD, reactor.eventFD, reactor.timerFD] {
      #expect(vt_fd_is_cloexec(fd) == 1)
    }
  }
}
