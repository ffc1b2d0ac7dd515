/// The elastic pool for work that may block (`taskDedicated`, guest threads).
///
/// Threads are created on demand, up to `maxThreads`, reused while work keeps coming, and retired
/// after `keepAlive` idle. At the cap, work waits in FIFO order: a barrier wider than the cap can
/// never open (as with any bounded pool). A refused `pthread_create` leaves the work queued when a
/// live thread exists to run it; with none, the submit throws `.spawnFailed` and the closure is
/// released unrun. Shutdown closes the queue to new work, lets the threads run everything already
/// accepted, and joins every thread, including those that retired earlier.
///
/// Hand-off: an idle thread parks on its own futex (CShims `vt_park`) and waits in a LIFO stack.
/// A submit that finds one pops it, puts the closure in its slot, and wakes it after releasing the
/// lock, so the woken thread starts the closure without touching the lock (a condition variable
/// signalled under the lock made the woken thread block on that lock first: a round trip took
/// about 27 us). LIFO: the most recently idle thread, whose stack is warm, is reused; the others
/// age out after the keep-alive.
///
/// Locking rule: every field below `lock` is read and written only with `lock` held, and so are
/// an `IdleThread`'s `handed` and `waiting`. Those fields are `@exclusivity(unchecked)`: the lock
/// already makes every access exclusive, and Swift's dynamic checks cost the submitting thread
/// about 15% of W1.
/// Threads: `submit` from any thread; `shutdownAndJoin` from one owner thread that is not a
/// thread of this pool.
import CShims
import Logging
import Synchronization

final class BlockingPool: @unchecked Sendable {  // all mutable state is guarded by `lock`
  typealias Work = @Sendable () -> Void

  private let lock = ConditionLock()
  /// Closures wrapped in `Item`: a closure stored directly in a generic container is kept at
  /// maximal abstraction, which boxes it (a malloc per submit and another per read-back).
  private struct Item {
    var work: Work?
  }
  /// One pool thread while it is idle: its parker and the slot a submitter hands work into.
  private final class IdleThread: @unchecked Sendable {  // `handed`, `waiting` under the pool's `lock`; `parker` via vt_park/vt_unpark (atomic)
    let parker: UnsafeMutablePointer<vt_parker>
    /// Work handed over by a submit (which also took this thread out of `idleStack`).
    @exclusivity(unchecked) var handed: Work?
    /// In `idleStack`, waiting for work.
    @exclusivity(unchecked) var waiting = false

    init() {
      parker = .allocate(capacity: 1)
      vt_parker_init(parker)
    }
    deinit { parker.deallocate() }
  }

  @exclusivity(unchecked) private var queue: [Item] = []
  @exclusivity(unchecked) private var queueHead = 0
  @exclusivity(unchecked) private var threads = 0
  /// Parked idle threads, the most recently idle last.
  @exclusivity(unchecked) private var idleStack: [IdleThread] = []
  /// Threads that found the queue empty and spin briefly before parking: work queued while they
  /// spin needs no wake-up, and a submit counts them as available (no new thread for it).
  @exclusivity(unchecked) private var spinning = 0
  /// `queue.count - queueHead`, written under `lock`, read by spinning threads without it.
  private let queuedHint = Atomic<Int>(0)
  @exclusivity(unchecked) private var closed = false
  @exclusivity(unchecked) private var nextThreadNumber = 0
  @exclusivity(unchecked) private var live: [Int: OSThread] = [:]
  /// Threads that retired (keep-alive) and still need joining.
  @exclusivity(unchecked) private var exited: [OSThread] = []
  @exclusivity(unchecked) private var completed = 0
  @exclusivity(unchecked) private var spawnFailures = 0
  /// Submits waiting for a thread number to be registered in `live` (a thread that starts before
  /// its spawner registered it must not miss its own entry).
  private let maxThreads: Int
  private let keepAliveNanos: Int64
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
      Snapshot(
        threads: threads, busy: threads - idleStack.count - spinning,
        idle: idleStack.count + spinning,
        queued: queue.count - queueHead, completed: completed, spawnFailures: spawnFailures)
    }
  }

  /// Accepts `work` or throws (`.shutDown`, `.spawnFailed`) having released it unrun.
  /// With `startNow`, the work must start at once on an idle or a new thread: at the cap it throws
  /// `.resourceExhausted` instead of waiting in the queue, and a refused thread throws
  /// `.spawnFailed` even when other threads live (guest threads use it: a spawn that waited for a
  /// thread could deadlock threads that wait for each other).
  func submit(_ work: @escaping Work, startNow: Bool = false) throws(WasiThreadError) {
    var toJoin: [OSThread] = []
    defer { for t in toJoin { t.join() } }
    var event: LogEvent?
    defer { if let event { write(event) } }  // runs after the unlock below
    // A closure taken back is released only after the unlock: it may hold the manager's last
    // reference, whose deinit takes this pool's lock (close()).
    var takenBack: Item?
    defer { withExtendedLifetime(takenBack) {} }
    // An idle thread given the work, woken once the lock is released (the defers run in reverse
    // order: the unlock below first, then this).
    var wake: IdleThread?
    defer { if let wake { vt_unpark(wake.parker) } }
    lock.lock()
    defer { lock.unlock() }
    if closed {
      event = .rejected
      throw .shutDown
    }
    if queue.count - queueHead < spinning {
      // A spinning thread takes it without a wake-up.
      enqueue(work)
      return
    }
    if let thread = idleStack.popLast() {
      thread.waiting = false
      thread.handed = work
      wake = thread
      return
    }
    if startNow && threads >= maxThreads { throw .resourceExhausted }
    enqueue(work)
    if threads >= maxThreads { return }  // waits FIFO for a thread to free up
    swap(&toJoin, &exited)
    let number = nextThreadNumber
    nextThreadNumber += 1
    threads += 1  // the new thread starts busy: it goes straight to the queue
    let result = OSThread.spawn(name: "\(namePrefix)-b\(number)") { [self] in self.run(number) }
    switch result {
    case .success(let thread):
      live[number] = thread
    case .failure(let error):
      threads -= 1
      spawnFailures += 1
      let thrown = threads == 0 || startNow
      event = .spawnFailed(
        thread: "\(namePrefix)-b\(number)", errno: error.code, threads: threads,
        queued: queue.count - queueHead - (thrown ? 1 : 0), thrown: thrown)
      if thrown {
        // Nobody can run it: take it back (it is the last one queued) and say why.
        takenBack = queue.removeLast()
        compactIfDrained()
        throw .spawnFailed(errno: error.code)
      }
      // A live thread will get to it.
    }
  }

  /// Lock held.
  private func enqueue(_ work: @escaping Work) {
    queue.append(Item(work: work))
    queuedHint.store(queue.count - queueHead, ordering: .relaxed)
  }

  private func compactIfDrained() {
    if queueHead == queue.count {
      queue.removeAll(keepingCapacity: queue.count < 4096)
      queueHead = 0
    } else if queueHead > 1024 && queueHead * 2 > queue.count {
      queue.removeFirst(queueHead)
      queueHead = 0
    }
  }

  /// The loop of one pool thread (lock not held on entry).
  private func run(_ number: Int) {
    vt_set_thread_owner(Unmanaged.passUnretained(self).toOpaque(), number)
    let me = IdleThread()
    lock.lock()
    while true {
      if queueHead < queue.count {
        var work = queue[queueHead].work.take()
        queueHead += 1
        compactIfDrained()
        queuedHint.store(queue.count - queueHead, ordering: .relaxed)
        lock.unlock()
        runAndRelease(work.take()!)  // no local keeps the closure alive past it
        lock.lock()
        completed += 1
        continue
      }
      if closed { break }
      // Stay available for a while (`Spin`): work submitted meanwhile costs no wake-up.
      spinning += 1
      lock.unlock()
      _ = Spin.until { queuedHint.load(ordering: .relaxed) > 0 }
      lock.lock()
      spinning -= 1
      if queueHead < queue.count || closed { continue }
      // Idle: park until a submit hands us work, shutdown, or the keep-alive passes.
      me.waiting = true
      idleStack.append(me)
      var retire = false
      while true {
        lock.unlock()
        let notified = vt_park(me.parker, keepAliveNanos) == 1
        lock.lock()
        if me.handed != nil {
          var work = me.handed.take()
          lock.unlock()
          runAndRelease(work.take()!)
          lock.lock()
          completed += 1
          break
        }
        if !me.waiting { break }  // taken out by close()
        if !notified {
          // Keep-alive passed with no work: leave the stack and retire.
          if let at = idleStack.lastIndex(where: { $0 === me }) { idleStack.remove(at: at) }
          me.waiting = false
          retire = true
          break
        }
        // A wake-up left over from an earlier hand-off: park again.
      }
      if retire {
        threads -= 1
        // Hand our handle to whoever joins next.
        if let handle = live.removeValue(forKey: number) { exited.append(handle) }
        lock.unlock()
        vt_set_thread_owner(nil, -1)
        return
      }
    }
    threads -= 1
    lock.unlock()
    vt_set_thread_owner(nil, -1)
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
    let woken: [IdleThread] = lock.withLock {
      closed = true
      for thread in idleStack { thread.waiting = false }
      defer { idleStack.removeAll() }
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
