/// The elastic pool for work that may block (`taskDedicated`, guest threads).
///
/// Threads are created on demand, up to `maxThreads`, reused while work keeps coming, and retired
/// after `keepAlive` idle. At the cap, work waits in FIFO order: a barrier wider than the cap can
/// never open (as with any bounded pool). A refused `pthread_create` leaves the work queued when a
/// live thread exists to run it; with none, the submit throws `.spawnFailed` and the closure is
/// released unrun. Shutdown closes the queue to new work, lets the threads run everything already
/// accepted, and joins every thread, including those that retired earlier.
///
/// Queue: a `WorkQueue` (two locks, one for submitters and one for pool threads), so a submit
/// that needs no thread woken or created never takes `lock`, and never waits for a pool thread.
///
/// Hand-off: an idle thread parks on its own futex (CShims `vt_park`) and waits in a LIFO stack.
/// A submit that finds one pops it, puts the closure in its slot, and wakes it after releasing the
/// lock, so the woken thread starts the closure without touching the lock (a condition variable
/// signalled under the lock made the woken thread block on that lock first: a round trip took
/// about 27 us). LIFO: the most recently idle thread, whose stack is warm, is reused; the others
/// age out after the keep-alive. A new thread is likewise handed the submit that created it.
///
/// The idle hand-shake (no work left queued while a thread parks): a thread that is about to
/// park publishes itself in `idleCount` (sequentially consistent store) and then reads the
/// queue's count; a submit on the fast path pushes (sequentially consistent store of the count)
/// and then reads `idleCount`. At least one of the two sees the other: the thread finds the work,
/// or the submit wakes an idle thread, which then pops from the queue. The fast path is taken
/// only when it needs no new thread: no thread is idle, and either a spinning thread is free to
/// take the work or the pool is at its cap (then a busy thread gets to it). A thread leaves the
/// pool only from the idle stack (keep-alive) or after `close()`, both under `lock`.
///
/// Locking rule: every field below `lock` is read and written only with `lock` held, and so are
/// a `PoolThread`'s `handed` and `waiting`. Those fields are `@exclusivity(unchecked)`: the lock
/// already makes every access exclusive, and Swift's dynamic checks cost the submitting thread
/// about 15% of W1. The atomics are readable anywhere; each says who stores it.
/// Threads: `submit` from any thread; `shutdownAndJoin` from one owner thread that is not a
/// thread of this pool.
import CShims
import Logging
import Synchronization

final class BlockingPool: @unchecked Sendable {  // mutable state: under `lock`, or atomic (see above)
  typealias Work = @Sendable () -> Void

  private let queue = WorkQueue()
  /// Threads whose spin found no work yet: work queued while they spin needs no wake-up, and a
  /// submit counts them as available (no new thread for it). Each thread adds and removes itself.
  /// A thread whose spin found work pops it before it stops counting itself, and `unclaimed`
  /// reads `spinning` before the queue's count, so work a spinning thread is taking is never seen
  /// as unclaimed (the other order started a second thread for a sequential round trip). The
  /// price: a submit's re-check can count a thread that has just popped other work; that thread
  /// re-checks after it stops counting itself (see `run`), so one of the two sees the surplus
  /// (the stop and the submit's push are sequentially consistent stores, each before the load).
  private let spinning = Atomic<Int>(0)
  /// `idleStack.count`, stored under `lock`: the idle hand-shake's other side.
  private let idleCount = Atomic<Int>(0)
  /// `threads`, stored under `lock` (by a retiring thread before its `idleCount` store).
  private let threadsHint = Atomic<Int>(0)

  private let lock = ConditionLock()
  /// One pool thread: its parker, the slot a submitter hands work into, and its count of closures
  /// run (stored only by the thread itself: no locked add shared by all threads per closure).
  private final class PoolThread: @unchecked Sendable {  // `handed`, `waiting` under the pool's `lock`; `parker` via vt_park/vt_unpark (atomic); `ran` atomic
    let parker: UnsafeMutablePointer<vt_parker>
    /// Work handed over by a submit (which also took this thread out of `idleStack`).
    @exclusivity(unchecked) var handed: Work?
    /// In `idleStack`, waiting for work.
    @exclusivity(unchecked) var waiting = false
    let ran = Atomic<Int>(0)

    init() {
      parker = .allocate(capacity: 1)
      vt_parker_init(parker)
    }
    deinit { parker.deallocate() }

    @inline(__always) func countRun() {
      ran.store(ran.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }
  }

  @exclusivity(unchecked) private var threads = 0
  /// Parked idle threads, the most recently idle last.
  @exclusivity(unchecked) private var idleStack: [PoolThread] = []
  @exclusivity(unchecked) private var nextThreadNumber = 0
  @exclusivity(unchecked) private var live: [Int: OSThread] = [:]
  /// Threads that have not yet left, by number: `snapshot` sums their `ran`.
  @exclusivity(unchecked) private var running: [Int: PoolThread] = [:]
  /// Threads that retired (keep-alive) and still need joining.
  @exclusivity(unchecked) private var exited: [OSThread] = []
  /// Closures run by threads no longer in `running`.
  @exclusivity(unchecked) private var completedByGone = 0
  @exclusivity(unchecked) private var spawnFailures = 0
  let maxThreads: Int
  let keepAliveNanos: Int64
  private let namePrefix: String
  /// Rare events only (a refused thread, a rejected submit), written after `lock` is released.
  private let logger: Logger

  init(
    maxThreads: Int, keepAlive: Duration, namePrefix: String,
    logger: Logger = .virtualTasksDefault
  ) {
    self.maxThreads = max(1, maxThreads)
    self.keepAliveNanos = keepAlive.saturatingNanoseconds
    self.namePrefix = namePrefix
    self.logger = logger
  }

  /// A log line decided under `lock` and written once it is released.
  private enum LogEvent {
    case rejected
    case spawnFailed(thread: String, errno: Int32, threads: Int, queued: Int, thrown: Bool)
  }

  private func write(_ event: LogEvent) {
    switch event {
    case .rejected:
      logger.submitRejected(pool: "blocking", reason: .shutDown)
    case .spawnFailed(let thread, let errno, let threads, let queued, let thrown):
      logger.threadSpawnFailed(
        pool: "blocking", thread: thread, errno: errno, threads: threads, queued: queued,
        outcome: thrown ? "thrown" : "queued")
    }
  }

  struct Snapshot {
    var threads: Int, busy: Int, idle: Int, queued: Int, completed: Int, spawnFailures: Int
  }

  func snapshot() -> Snapshot {
    lock.withLock {
      let idle = min(threads, idleStack.count + spinning.load(ordering: .relaxed))
      var completed = completedByGone
      for thread in running.values { completed += thread.ran.load(ordering: .relaxed) }
      return Snapshot(
        threads: threads, busy: threads - idle, idle: idle, queued: queue.count,
        completed: completed, spawnFailures: spawnFailures)
    }
  }

  /// Accepts `work` or throws (`.shutDown`, `.spawnFailed`) having released it unrun.
  /// With `startNow`, the work must start at once on an idle or a new thread: at the cap it throws
  /// `.resourceExhausted` instead of waiting in the queue, and a refused thread throws
  /// `.spawnFailed` even when other threads live (guest threads use it: a spawn that waited for a
  /// thread could deadlock threads that wait for each other).
  func submit(_ work: @escaping Work, startNow: Bool = false) throws(WasiThreadError) {
    if !startNow && idleCount.load(ordering: .acquiring) == 0
      && (threadsHint.load(ordering: .relaxed) >= maxThreads || unclaimed < 0)
    {
      // Fast path: no thread to wake or create (see the idle hand-shake above).
      guard queue.push(work) else {
        write(.rejected)
        throw .shutDown
      }
      // Two submits may both have counted the same spinning thread: the one that sees more
      // queued than spinning makes sure of a thread for the surplus, as `submitSlow` would have
      // (or the spinning thread does, after it took one: see `spinning`).
      if idleCount.load(ordering: .sequentiallyConsistent) > 0
        || (threadsHint.load(ordering: .relaxed) < maxThreads && unclaimed > 0)
      {
        provideThread()
      }
      return
    }
    try submitSlow(work, startNow: startNow)
  }

  /// Queued closures minus spinning threads (see `spinning` for the order of the two loads).
  private var unclaimed: Int {
    let free = spinning.load(ordering: .sequentiallyConsistent)
    return queue.count - free
  }

  /// For work already queued: wakes an idle thread, or starts one below the cap, when more is
  /// queued than spinning threads will take.
  private func provideThread() {
    var toJoin: [OSThread] = []
    defer { for t in toJoin { t.join() } }
    var event: LogEvent?
    defer { if let event { write(event) } }
    var wake: PoolThread?
    defer { if let wake { vt_unpark(wake.parker) } }
    lock.lock()
    defer { lock.unlock() }
    provideThreadLocked(wake: &wake, event: &event, toJoin: &toJoin)
  }

  /// Lock held. See `provideThread`.
  private func provideThreadLocked(
    wake: inout PoolThread?, event: inout LogEvent?, toJoin: inout [OSThread]
  ) {
    if queue.isClosed || unclaimed <= 0 { return }
    if let thread = idleStack.popLast() {
      idleCount.store(idleStack.count, ordering: .sequentiallyConsistent)
      thread.waiting = false  // woken with nothing handed: it pops from the queue
      wake = thread
      return
    }
    if threads >= maxThreads { return }
    if case .failure(let error) = spawnLocked(first: nil, toJoin: &toJoin) {
      // The work stays queued: this path runs only when a thread was there to count (spinning
      // or busy), and none leaves while work is queued.
      event = .spawnFailed(
        thread: "\(namePrefix)-b\(nextThreadNumber - 1)", errno: error.code, threads: threads,
        queued: queue.count, thrown: false)
    }
  }

  /// Lock held. Starts a thread (counted in `threads` from now) that runs `first`, if any, then
  /// goes to the queue. `first` is handed over in the thread's slot, not captured by the
  /// thread's body: that lives as long as the thread does.
  private func spawnLocked(first: Work?, toJoin: inout [OSThread]) -> Result<Void, SpawnErrno> {
    swap(&toJoin, &exited)
    let number = nextThreadNumber
    nextThreadNumber += 1
    threads += 1
    threadsHint.store(threads, ordering: .relaxed)
    let state = PoolThread()
    state.handed = first
    let result = OSThread.spawn(name: "\(namePrefix)-b\(number)") { [self] in
      self.run(number, state)
    }
    switch result {
    case .success(let thread):
      live[number] = thread
      running[number] = state
      return .success(())
    case .failure(let error):
      state.handed = nil  // not the last reference: the caller still holds `first`
      threads -= 1
      threadsHint.store(threads, ordering: .relaxed)
      spawnFailures += 1
      return .failure(error)
    }
  }

  private func submitSlow(_ work: @escaping Work, startNow: Bool) throws(WasiThreadError) {
    var toJoin: [OSThread] = []
    defer { for t in toJoin { t.join() } }
    var event: LogEvent?
    defer { if let event { write(event) } }  // runs after the unlock below
    // An idle thread given the work, woken once the lock is released (the defers run in reverse
    // order: the unlock below first, then this).
    var wake: PoolThread?
    defer { if let wake { vt_unpark(wake.parker) } }
    lock.lock()
    defer { lock.unlock() }
    // `close()` closes the queue under `lock`, so this answer holds until the unlock.
    if queue.isClosed {
      event = .rejected
      throw .shutDown
    }
    if unclaimed < 0 {
      // A spinning thread takes it without a wake-up (or, should a submit on the fast path
      // have counted the same one, `provideThreadLocked` finds another).
      _ = queue.push(work)
      provideThreadLocked(wake: &wake, event: &event, toJoin: &toJoin)
      return
    }
    if let thread = idleStack.popLast() {
      idleCount.store(idleStack.count, ordering: .sequentiallyConsistent)
      thread.waiting = false
      thread.handed = work
      wake = thread
      return
    }
    if threads >= maxThreads {
      if startNow { throw .resourceExhausted }
      _ = queue.push(work)  // waits FIFO for a thread to free up
      return
    }
    // The new thread starts with this work.
    if case .failure(let error) = spawnLocked(first: work, toJoin: &toJoin) {
      let thrown = threads == 0 || startNow
      event = .spawnFailed(
        thread: "\(namePrefix)-b\(nextThreadNumber - 1)", errno: error.code, threads: threads,
        queued: queue.count + (thrown ? 0 : 1), thrown: thrown)
      // Nobody can run it: say why (the caller still holds the closure and releases it).
      if thrown { throw .spawnFailed(errno: error.code) }
      // A live thread will get to it: none is idle (checked above, and none can become idle
      // without `lock`), so each is busy or spinning and comes back to the queue.
      _ = queue.push(work)
    }
  }

  /// The loop of one pool thread (lock not held on entry).
  private func run(_ number: Int, _ me: PoolThread) {
    vt_set_thread_owner(Unmanaged.passUnretained(self).toOpaque(), number)
    var first = lock.withLock { me.handed.take() }
    if first != nil {
      runAndRelease(first.take()!)  // no local keeps the closure alive past it
      me.countRun()
    }
    outer: while true {
      if let work = queue.pop() {
        runAndRelease(work)
        me.countRun()
        continue
      }
      if queue.isClosed {
        // Everything pushed before the close is visible now: one more look, then leave.
        if let work = queue.pop() {
          runAndRelease(work)
          me.countRun()
          continue
        }
        break
      }
      // Stay available for a while (`Spin`): work submitted meanwhile costs no wake-up.
      spinning.add(1, ordering: .relaxed)
      var found = Spin.until({ queue.count > 0 || queue.isClosed })
      if !found {
        // Idle: park until a submit hands us work or wakes us, shutdown, or the keep-alive passes.
        // Counted as spinning until it is in the stack, so a submit under `lock` always sees this
        // thread as available one way or the other (and starts no new thread for its work).
        lock.lock()
        me.waiting = true
        idleStack.append(me)
        idleCount.store(idleStack.count, ordering: .sequentiallyConsistent)
        if queue.count > 0 || queue.isClosed {
          // Work came in (the hand-shake above): stay out of the stack and take it as a spinning
          // thread would (a submit's `provideThread` must not count it as unclaimed meanwhile).
          leaveIdleStack(me)
          lock.unlock()
          found = true
        } else {
          spinning.subtract(1, ordering: .relaxed)
        }
      }
      if found {
        // Take it while still counted (see `spinning`); another thread may have taken it first.
        let work = queue.pop()
        spinning.subtract(1, ordering: .sequentiallyConsistent)
        // A submit may have counted this thread for work it did not take: provide for that.
        if unclaimed > 0
          && (idleCount.load(ordering: .sequentiallyConsistent) > 0
            || threadsHint.load(ordering: .relaxed) < maxThreads)
        {
          provideThread()
        }
        if let work {
          runAndRelease(work)
          me.countRun()
        }
        continue
      }
      while true {
        lock.unlock()
        let notified = vt_park(me.parker, keepAliveNanos) == 1
        lock.lock()
        if me.handed != nil {
          var work = me.handed.take()
          lock.unlock()
          runAndRelease(work.take()!)  // no local keeps the closure alive past it
          me.countRun()
          continue outer
        }
        if !me.waiting {
          // Taken out of the stack by a submit (work is queued) or by close().
          lock.unlock()
          continue outer
        }
        if !notified {
          // Keep-alive passed with no work: leave the stack and retire.
          retire(number, me, fromIdleStack: true)
          lock.unlock()
          vt_set_thread_owner(nil, -1)
          return
        }
        // A wake-up left over from an earlier hand-off: park again.
      }
    }
    lock.lock()
    retire(number, me, fromIdleStack: false)
    lock.unlock()
    vt_set_thread_owner(nil, -1)
  }

  /// Lock held.
  private func leaveIdleStack(_ me: PoolThread) {
    if let at = idleStack.lastIndex(where: { $0 === me }) { idleStack.remove(at: at) }
    me.waiting = false
    idleCount.store(idleStack.count, ordering: .sequentiallyConsistent)
  }

  /// Lock held. Takes the thread out of the counts. A thread retiring on keep-alive leaves the
  /// idle stack and hands its handle to whoever joins next (shutdown joins the `live` ones).
  /// `threadsHint` is stored before `idleCount`: a submit that reads the new `idleCount` (acquire)
  /// then reads the new thread count, and so never takes the at-the-cap fast path for a pool
  /// that has just dropped below its cap (its work could then wait behind busy threads forever).
  private func retire(_ number: Int, _ me: PoolThread, fromIdleStack: Bool) {
    threads -= 1
    threadsHint.store(threads, ordering: .releasing)
    if fromIdleStack { leaveIdleStack(me) }
    completedByGone += me.ran.load(ordering: .relaxed)
    running[number] = nil
    if fromIdleStack, let handle = live.removeValue(forKey: number) { exited.append(handle) }
  }

  /// Runs `work` (lock not held) and releases it before the caller re-takes the lock: it may
  /// hold the manager's last reference, and that deinit takes this lock (close()); releasing
  /// under it deadlocked.
  private func runAndRelease(_ work: consuming @escaping Work) {
    work()
    _ = consume work
  }

  /// True when the calling thread is one of this pool's threads.
  var isCurrentThreadInPool: Bool {
    vt_thread_owner() == Unmanaged.passUnretained(self).toOpaque()
  }

  /// Stops accepting new work (threads keep running what is queued).
  func close() {
    let woken: [PoolThread] = lock.withLock {
      queue.close()
      for thread in idleStack { thread.waiting = false }
      defer {
        idleStack.removeAll()
        idleCount.store(0, ordering: .sequentiallyConsistent)
      }
      return idleStack
    }
    for thread in woken { vt_unpark(thread.parker) }
  }

  /// Stops accepting, runs everything queued, joins every thread (live and retired).
  func shutdownAndJoin() {
    var toJoin: [OSThread] = []
    close()
    // Threads exit once the queue is empty; collect handles after they are all gone.
    while true {
      let (handles, remaining): ([OSThread], Int) = lock.withLock {
        let h = Array(live.values) + exited
        live.removeAll()
        exited.removeAll()
        return (h, threads)
      }
      toJoin = handles
      for t in toJoin { t.join() }
      if remaining == 0 || toJoin.isEmpty { break }
    }
  }
}

extension Duration {
  /// Nanoseconds, rounded up, saturating at `Int64.max` (never traps) and at 0 below zero.
  var saturatingNanoseconds: Int64 {
    let (seconds, attoseconds) = components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
    let (s, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if o1 { return .max }
    let frac = (attoseconds + 999_999_999) / 1_000_000_000  // round up to the next nanosecond
    let (r, o2) = s.addingReportingOverflow(frac)
    return o2 ? .max : r
  }
}
