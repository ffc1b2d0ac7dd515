/// The reactor: one thread per manager, blocked in `epoll_wait` on an eventfd (stop requests), a
/// timerfd (the earliest sleep deadline) and the fds that tasks wait on.
///
/// Timers: `sleep` inserts into the `TimerHeap` under `state`'s lock and, when the earliest
/// deadline moves earlier, re-arms the timerfd (absolute, CLOCK_BOOTTIME: the clock of Swift's
/// `ContinuousClock`, so no caller measuring with it ever sees an early wake). The reactor is not
/// woken for that: the kernel wakes it when the timerfd fires, so the eventfd is written only to
/// stop the reactor. On expiry the reactor pops every expired timer under the lock, re-arms for
/// the next one, and resumes the batch after unlocking, in (deadline, submission) order. Workers
/// fire timers too: awake ones between jobs (through `deadlineHint`), a parked one as the timer
/// watcher (`claimEarliest`); while they do, the timerfd is armed `watchGraceNanos` late, as a
/// backstop, and the reactor thread does not poll.
///
/// Cancellation frees a timer at once, not at its deadline, and resumes its sleeper. A sleep's
/// timer is inserted with its continuation, under the lock that fire, cancel and close take, so
/// exactly one of them resumes it (see `sleep(untilNanoseconds:)` for a cancel that comes first).
///
/// Fd readiness: see `Readiness.swift`. Threads: every method may be called from any thread;
/// `close()` from one owner thread that is not the reactor.
#if canImport(Glibc)
  import Glibc
#endif
import CShims
import Synchronization

final class Reactor: @unchecked Sendable {  // mutable state lives in `state` (a pthread-mutex Locked) and atomics
  static let eventTag: UInt64 = 0
  static let timerTag: UInt64 = 1

  let epollFD: Int32
  let eventFD: Int32
  let timerFD: Int32
  private var thread: OSThread?
  /// Told before and after the reactor thread resumes a batch of waiters, so that their jobs
  /// reach the worker pool in one hand-off (unowned: the pool holds this reactor as its timers).
  private unowned let batcher: (any ResumeBatcher)?
  private let stopRequested = Atomic<Bool>(false)
  /// The earliest pending deadline, published for the workers (see `DeadlineHint`).
  let deadlineHint = DeadlineHint()
  /// Held by whichever thread fires timers (the reactor thread, a worker between jobs, the timer
  /// watcher) from its pop until the jobs it resumed are in the worker pool's priority queue and
  /// the scheduled tasks it found are in its due queue (`SpawnQueue.due`). Pops are ordered by
  /// the state lock alone, but hand-offs were not: a reactor thread still creating the tasks of
  /// 476 scheduled tasks (under TSan) let a worker pop, start and run the 24 submitted after
  /// them, for the same deadline, first. Workers between jobs only try it (someone is firing
  /// already).
  let firing = Locked(())
  /// While `State.polling`: the deadline the reactor thread spins toward (lowered under the lock
  /// by a sleep that is due sooner, read by the spinning thread without it).
  private let pollTarget = Atomic<Int64>(.max)
  /// A next deadline at most this far away is polled for rather than armed. Re-arming the
  /// timerfd costs a `timerfd_settime` and a wake-up per deadline: with 100k sleeps spread over
  /// 100 ms (W5, about one deadline per microsecond) the reactor thread spent its time in those
  /// syscalls and fell milliseconds behind.
  static let pollWindowNanos: Int64 = 50_000
  /// How long after a deadline claimed by the timer watcher the timerfd fires anyway, in case the
  /// watcher's own wake-up is that late.
  static let watchGraceNanos: Int64 = 200_000

  struct FdWaiter {
    let id: UInt64
    let events: UInt32
    var continuation: ReadinessContinuation?
  }

  struct FdRecord {
    /// Set when the fd is added to the epoll set; carried in the event data, so an event fetched
    /// for an earlier registration of the same fd number is recognised and ignored.
    var generation: UInt32 = 0
    var waiters: [FdWaiter] = []
    var interest: UInt32 {
      waiters.reduce(0) { $0 | $1.events }
    }
  }

  struct State {
    var timers = TimerHeap<TimerPayload>()
    /// Scheduled tasks in `timers` (`schedule`), and the manager that starts them when due,
    /// held while any is pending: the tasks use it as their executor preference, so it must
    /// outlive them (one reference for all of them, like the worker pool's spawn queue).
    var scheduled = 0
    var scheduledOwner: (any ScheduledTaskStarter)?
    /// The absolute deadline the timerfd is armed at; 0 when disarmed.
    var armed: Int64 = 0
    /// The reactor thread is polling the clock for the next deadline (`pollTarget`) instead of
    /// arming the timerfd; a sleep inserted earlier than that lowers `pollTarget`.
    var polling = false
    /// The deadline the timer watcher (a parked worker) has claimed, else 0. While it is the
    /// earliest, the timerfd is armed `watchGraceNanos` after it, as a backstop, instead of at
    /// it: two wake-ups at the same instant made the reactor thread, woken by the timerfd on the
    /// watcher's CPU, preempt the watcher just as its sleep was due (25 us late at the median).
    var watched: Int64 = 0
    var closed = false
    var fds: [Int32: FdRecord] = [:]
    /// Readiness waits that finished before their continuation was attached.
    var early: [UInt64: Result<Void, any Error>] = [:]
    var nextWaiterID: UInt64 = 0
    var nextGeneration: UInt32 = 0
    var firedTimers = 0
  }

  /// Locking rule: every access to timers, fds and the timerfd arming goes through this lock.
  let state = Locked(State())

  /// Creates the three fds and starts the reactor thread; on failure closes what it opened.
  init(threadName: String, batcher: (any ResumeBatcher)? = nil) throws(WasiThreadError) {
    self.batcher = batcher
    var opened: [Int32] = []
    func fail(_ name: String, _ r: Int32) -> WasiThreadError {
      for fd in opened { _ = Glibc.close(fd) }
      return .systemCallFailed(name: name, errno: -r)
    }
    let ep = vt_epoll_create()
    if ep < 0 { throw fail("epoll_create1", ep) }
    opened.append(ep)
    let ev = vt_eventfd_create(0)
    if ev < 0 { throw fail("eventfd", ev) }
    opened.append(ev)
    let tf = vt_timerfd_create(Int32(VT_CLOCK_BOOTTIME))
    if tf < 0 { throw fail("timerfd_create", tf) }
    opened.append(tf)
    var r = vt_epoll_ctl(ep, Int32(VT_EPOLL_CTL_ADD), ev, UInt32(VT_EPOLLIN), Self.eventTag)
    if r < 0 { throw fail("epoll_ctl", r) }
    r = vt_epoll_ctl(ep, Int32(VT_EPOLL_CTL_ADD), tf, UInt32(VT_EPOLLIN), Self.timerTag)
    if r < 0 { throw fail("epoll_ctl", r) }
    epollFD = ep
    eventFD = ev
    timerFD = tf
    let result = OSThread.spawn(name: threadName) { [self] in self.run() }
    switch result {
    case .success(let t): thread = t
    case .failure(let e):
      for fd in opened { _ = Glibc.close(fd) }
      throw .spawnFailed(errno: e.code)
    }
  }

  // MARK: sleeping (any thread)

  /// Suspends the caller until `nanoseconds` (> 0) have passed on CLOCK_BOOTTIME, the task is
  /// cancelled, or the reactor closes. Returns at once when already closed.
  func sleep(nanoseconds: Int64) async {
    let now = Syscall.continuousNow()
    let (sum, overflow) = now.addingReportingOverflow(nanoseconds)
    await sleep(untilNanoseconds: overflow ? Int64.max : sum)
  }

  /// Suspends the caller until CLOCK_BOOTTIME reaches `deadline` (ns), cancellation or close.
  ///
  /// One lock acquisition per sleep: the timer is inserted with its continuation. The handler and
  /// the operation share `token` and `cancelled`, two locals of this frame (no allocation), and
  /// touch them only under `state`'s lock: a cancellation that comes first leaves `cancelled` for
  /// the insert to find (no timer is then created), one that comes later finds `token`.
  func sleep(untilNanoseconds deadline: Int64) async {
    nonisolated(unsafe) var token: TimerToken?  // under `state`'s lock
    nonisolated(unsafe) var cancelled = false  // under `state`'s lock
    await withTaskCancellationHandler {
      await withSleepContinuation { continuation in
        let resumeNow: Bool = state.withLock { s in
          if s.closed || cancelled { return true }
          let inserted = s.timers.insert(deadline: deadline)
          _ = s.timers.attach(inserted, .sleeper(continuation))
          token = inserted
          self.inserted(&s, deadline)
          return false
        }
        if resumeNow { continuation.resume() }  // closed (shutdown) or cancelled already
      }
    } onCancel: {
      let removed: TimerPayload? = state.withLock { s in
        cancelled = true
        guard let token else { return nil }  // not inserted yet: the insert sees `cancelled`
        let payload = s.timers.remove(token).payload
        publishEarliest(s)
        return payload
      }
      if case .sleeper(let continuation)? = removed { continuation.resume() }
    }
  }

  // MARK: scheduled tasks (any thread)

  /// Queues `body` (a `.task` or a `.call`) to be started by `owner` once CLOCK_BOOTTIME reaches
  /// `deadline` (ns), as a timer: no task exists until then. Nil when the reactor is closed: the
  /// caller starts it at once (shutdown starts every pending one, see `close`).
  func schedule(
    untilNanoseconds deadline: Int64, owner: any ScheduledTaskStarter, _ body: TimerPayload
  ) -> TimerToken? {
    state.withLock { s in
      if s.closed { return nil }
      let token = s.timers.insert(deadline: deadline)
      _ = s.timers.attach(token, body)
      if s.scheduled == 0 { s.scheduledOwner = owner }
      s.scheduled += 1
      inserted(&s, deadline)
      return token
    }
  }

  /// Removes a scheduled task that has not started. True when this call removed it: its body is
  /// then released unrun, and so is the owner's hold when it was the last one pending, both after
  /// the lock (the body's captures may do anything on deinit, and the owner's deinit shuts the
  /// manager down).
  func cancelScheduled(_ token: TimerToken) -> Bool {
    var owner: (any ScheduledTaskStarter)?
    var removed: (found: Bool, payload: TimerPayload?) = (false, nil)
    state.withLock { s in
      removed = s.timers.remove(token)
      guard removed.found else { return }
      publishEarliest(s)
      s.scheduled -= 1
      if s.scheduled == 0 { owner = s.scheduledOwner.take() }
    }
    // Released here, not at their last use (which Swift may pick, inside the lock).
    removed.payload = nil
    withExtendedLifetime(owner) {}
    return removed.found
  }

  /// After inserting a timer due at `deadline` (lock held): publishes the earliest deadline and
  /// moves the timerfd (or the poll target) earlier when this one is due first.
  @inline(__always)
  private func inserted(_ s: inout State, _ deadline: Int64) {
    publishEarliest(s)
    if s.polling {
      if deadline < pollTarget.load(ordering: .relaxed) {
        pollTarget.store(deadline, ordering: .relaxed)
      }
    } else if let earliest = s.timers.earliestDeadline {
      let target = armTarget(s, earliest)
      if s.armed == 0 || target < s.armed { arm(&s, target) }
    }
  }

  /// Resumes the sleepers and hands over the scheduled tasks of a batch popped under the lock
  /// (lock not held), each kind in the batch's (deadline, submission) order. `starter` is the
  /// tasks' owner, taken under the lock when the batch holds any.
  @inline(__always)
  private func fire(_ batch: [TimerPayload?], starter: (any ScheduledTaskStarter)?) {
    for payload in batch {
      // (nil, a timer with no payload, only comes from tests: `sleep` and `schedule` attach
      // theirs under the insert's lock.)
      if case .sleeper(let continuation)? = payload { continuation.resume() }
    }
    starter?.startDue(batch)
  }

  /// Counts the scheduled tasks in `batch`, just popped (lock held), and returns their owner, to
  /// start them with once the lock is released; releases the owner's hold when none is left
  /// pending.
  @inline(__always)
  private func takeScheduled(_ s: inout State, _ batch: [TimerPayload?]) -> (any ScheduledTaskStarter)? {
    if s.scheduled == 0 { return nil }
    var tasks = 0
    for payload in batch {
      switch payload {
      case .task?, .call?: tasks += 1
      case .sleeper?, nil: break
      }
    }
    if tasks == 0 { return nil }
    s.scheduled -= tasks
    return s.scheduled == 0 ? s.scheduledOwner.take() : s.scheduledOwner
  }

  /// Where the timerfd goes for the earliest deadline `earliest`: there, or a grace period later
  /// when a worker will fire it: the timer watcher has claimed it, or a worker is awake (awake
  /// workers fire due timers between jobs, `WorkerPool.fireDueTimers`). Lock held.
  @inline(__always)
  private func armTarget(_ s: State, _ earliest: Int64) -> Int64 {
    earliest == s.watched || workersDriveTimers ? earliest &+ Self.watchGraceNanos : earliest
  }

  /// Whether a worker of the pool is awake, and so checks the deadline hint between jobs.
  private var workersDriveTimers: Bool { batcher?.workersAwake ?? false }

  /// Publishes the earliest deadline to `deadlineHint` (lock held).
  @inline(__always)
  private func publishEarliest(_ s: borrowing State) {
    let earliest = s.closed ? Int64.max : (s.timers.earliestDeadline ?? .max)
    if deadlineHint.value.load(ordering: .relaxed) != earliest {
      deadlineHint.value.store(earliest, ordering: .relaxed)
    }
  }

  /// Arms the timerfd at `deadline` (lock held).
  private func arm(_ s: inout State, _ deadline: Int64) {
    s.armed = deadline
    // Far deadlines are armed at a still-valid far instant; firing early there just re-arms.
    _ = vt_timerfd_set_abs_ns(timerFD, min(deadline, Int64.max / 4))
  }

  // MARK: the reactor thread

  private func run() {
    _ = vt_set_timer_slack(1)
    // Marks this thread so that the worker pool serves the jobs it resumes first.
    vt_set_thread_owner(Unmanaged.passUnretained(self).toOpaque(), WorkerPool.reactorThreadIndex)
    let capacity = 64
    let events = UnsafeMutablePointer<vt_epoll_event>.allocate(capacity: capacity)
    defer { events.deallocate() }
    var expired: [TimerPayload?] = []
    var readyWaiters: [(ReadinessContinuation, Result<Void, any Error>)] = []
    var polling = false
    while true {
      // While polling for a near deadline, only look at the fds (no blocking).
      let n = vt_epoll_wait(epollFD, events, Int32(capacity), polling ? 0 : -1)
      if n < 0 {
        if n == -EINTR { continue }
        break  // EBADF/EINVAL: the epoll fd is unusable; nothing can wake us again.
      }
      var timerFired = false
      for i in 0..<Int(n) {
        let event = events[i]
        switch event.data {
        case Self.eventTag:
          var value: UInt64 = 0
          _ = vt_eventfd_read(eventFD, &value)
        case Self.timerTag:
          var value: UInt64 = 0
          _ = vt_timerfd_read(timerFD, &value)
          timerFired = true
        default:
          handleReadiness(
            fd: Int32(truncatingIfNeeded: event.data & 0xffff_ffff),
            generation: UInt32(truncatingIfNeeded: event.data >> 32), events: event.events,
            into: &readyWaiters)
        }
      }
      if polling {
        waitForPollTarget()
        timerFired = true
      }
      if timerFired || !readyWaiters.isEmpty {
        // The whole batch, from the pop to the hand-off, under `firing` (see there).
        firing.withLock { _ in
          batcher?.beginResumeBatch()
          if timerFired {
            polling = fireExpired(now: Syscall.continuousNow(), buffer: &expired, mayPoll: true)
          }
          for (c, r) in readyWaiters { c.resume(with: r) }
          readyWaiters.removeAllRetainingSmallStorage()
          batcher?.endResumeBatch()
        }
      }
      if stopRequested.load(ordering: .acquiring) { break }
    }
  }

  /// Spins until the poll target passes (or shutdown is requested). At most `pollWindowNanos`.
  private func waitForPollTarget() {
    Spin.toDeadline(
      { pollTarget.load(ordering: .relaxed) }, abort: { stopRequested.load(ordering: .relaxed) })
  }

  /// Pops every timer due at `now` under the lock and resumes the batch in (deadline,
  /// submission) order. Then, for the next deadline: with `mayPoll` (the reactor thread only),
  /// when it is within `pollWindowNanos`, returns true to poll for it instead of arming the
  /// timerfd (never early: the thread spins until it has passed); otherwise arms the timerfd at
  /// it unless already armed there. Called without `mayPoll` by the timer-watcher worker (which
  /// leaves the next deadline to a polling reactor thread) and by tests, to fire a far deadline
  /// without waiting for it.
  @discardableResult
  func fireExpired(now: Int64, buffer expired: inout [TimerPayload?], mayPoll: Bool = false) -> Bool {
    var starter: (any ScheduledTaskStarter)?
    let polling: Bool = state.withLock { s in
      s.timers.popExpired(now: now, into: &expired)
      s.timers.settleTop()  // the next deadline is armed for exactly (not a cancelled one's)
      s.firedTimers &+= expired.count
      starter = takeScheduled(&s, expired)
      publishEarliest(s)
      if s.polling && !mayPoll { return false }  // the polling reactor thread fires the next
      if s.armed <= now { s.armed = 0 }  // passed: the one-shot timerfd fired (or is about to)
      guard let next = s.timers.earliestDeadline, !s.closed else {
        s.polling = false
        s.armed = 0
        return false
      }
      // Poll only when no worker is awake to fire it between its jobs: a polling reactor
      // thread is one more runnable thread, and on a small machine the busy workers were
      // preempted for it (W5: timers late by milliseconds).
      if mayPoll && next &- now <= Self.pollWindowNanos && !workersDriveTimers {
        s.polling = true
        pollTarget.store(next, ordering: .relaxed)
        return true
      }
      s.polling = false
      let target = armTarget(s, next)
      // The reactor thread re-arms exactly. A worker firing between jobs moves the timerfd
      // earlier, and later only once the backstop is less than half a grace period away: a
      // re-arm per fire was a `timerfd_settime` per deadline in a dense stream of them, and a
      // backstop left to fire woke the reactor thread every grace period while the workers kept
      // up (W5: 5k wake-ups a second, each preempting a busy worker on a 2-CPU machine). So at
      // most one re-arm per half grace period, and a timer still fires at most a grace period
      // late once the workers stop firing.
      if mayPoll {
        if s.armed != target { arm(&s, target) }
      } else if s.armed == 0 || target < s.armed || s.armed &- now < Self.watchGraceNanos / 2 {
        arm(&s, target)
      }
      return false
    }
    fire(expired, starter: starter)
    expired.removeAllRetainingSmallStorage()
    return polling
  }

  // MARK: shutdown

  /// Resumes every pending sleep, starts every pending scheduled task, ends every readiness wait
  /// with `.shutDown`, stops and joins the reactor thread and closes its fds. Idempotent. Must
  /// not be called from the reactor thread.
  func close() {
    var pending: [TimerPayload?] = []
    var starter: (any ScheduledTaskStarter)?
    var waiters: [ReadinessContinuation] = []
    let first: Bool = state.withLock { s in
      if s.closed { return false }
      s.closed = true
      s.timers.popExpired(now: .max, into: &pending)  // in (deadline, submission) order
      starter = takeScheduled(&s, pending)
      publishEarliest(s)
      for (fd, record) in s.fds {
        _ = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_DEL), fd, 0, 0)
        for w in record.waiters {
          if let c = w.continuation { waiters.append(c) } else { s.early[w.id] = .failure(WasiThreadError.shutDown) }
        }
      }
      s.fds.removeAll()
      return true
    }
    fire(pending, starter: starter)
    for c in waiters { c.resume(throwing: WasiThreadError.shutDown) }
    guard first else { return }
    stopRequested.store(true, ordering: .releasing)
    _ = vt_eventfd_write(eventFD, 1)
    thread?.join()
    thread = nil
    _ = Glibc.close(timerFD)
    _ = Glibc.close(eventFD)
    _ = Glibc.close(epollFD)
  }

  var isClosed: Bool { state.withLock { $0.closed } }

  struct Snapshot {
    var pendingTimers: Int
    var registeredFDs: Int
  }

  func snapshot() -> Snapshot {
    state.withLock { Snapshot(pendingTimers: $0.timers.count, registeredFDs: $0.fds.count) }
  }
}

extension Reactor: WorkerTimerSource {
  var firingLock: Locked<Void> { firing }

  func earliestDeadline() -> Int64? {
    state.withLock { $0.closed ? nil : $0.timers.earliestDeadline }
  }

  func claimEarliest() -> Int64? {
    state.withLock { s in
      // A polling reactor thread is awake for the next deadline already.
      if s.closed || s.polling { return nil }
      s.timers.settleTop()  // never claim (and park for) a cancelled deadline
      guard let earliest = s.timers.earliestDeadline else { return nil }
      s.watched = earliest
      // Armed at the deadline (or not at all): the backstop instead. Armed earlier (a cancelled
      // sleep's deadline): left there; that fire finds nothing due and re-arms at the backstop.
      if s.armed == earliest || s.armed == 0 { arm(&s, armTarget(s, earliest)) }
      return earliest
    }
  }

  func releaseClaim() {
    state.withLock { s in
      if s.watched == 0 { return }
      s.watched = 0
      guard !s.closed, !s.polling, let earliest = s.timers.earliestDeadline else { return }
      if s.armed == 0 || earliest < s.armed { arm(&s, earliest) }
    }
  }

  func fireDue(now: Int64, buffer: inout [TimerPayload?]) {
    fireExpired(now: now, buffer: &buffer)
  }
}

/// What a timer holds: a suspended `sleep`'s continuation, the body of a scheduled task (a
/// `taskShared(after:)` task that does not exist yet), started when due, or a scheduled callback
/// (`schedule(after:)`), called on a worker when due.
enum TimerPayload {
  case sleeper(SleepContinuation)
  case task(@Sendable () async -> Void)
  case call(@Sendable () -> Void)
}

/// Starts the scheduled tasks and callbacks that come due (the manager: they run as its
/// `taskShared` tasks, or on its workers).
protocol ScheduledTaskStarter: AnyObject, Sendable {
  /// Starts the due scheduled tasks and callbacks of `batch` (its `.task` and `.call` payloads,
  /// in order), from whichever thread fired their timers.
  func startDue(_ batch: [TimerPayload?])
}

/// The earliest pending sleep deadline (CLOCK_BOOTTIME ns; `Int64.max` when none), published by
/// the reactor under its lock whenever it changes, read by awake workers between jobs without the
/// lock: a relaxed load, and a clock read only while some sleep is pending. A stale value costs at
/// most one look under the lock that finds nothing due, or a timer fired a job later (the
/// timerfd stays armed as a backstop).
final class DeadlineHint: Sendable {
  let value = Atomic<Int64>(.max)
}
