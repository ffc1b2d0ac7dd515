/// `ThreadPoolTaskManager`: the library's `VirtualTaskManager`, and a Swift `TaskExecutor`.
///
/// It composes three parts, each in its own folder: a fixed `WorkerPool` for async work, an
/// elastic `BlockingPool` for work that may block, and a `Reactor` thread for sleeps and fd
/// readiness. The manager itself only admits work and runs the shutdown protocol below.
///
/// Shutdown protocol (`shutdownGracefully`):
/// 1. The first call closes admission at once: `taskShared` and `taskDedicated` throw `.shutDown`
///    from then on (a closed bit in `sharedState`, checked and set atomically with the live count;
///    the blocking pool's `closed` flag under its lock).
/// 2. A teardown thread (`<prefix>-stop`) then closes the reactor (every pending sleep returns, every
///    readiness wait throws `.shutDown`, its thread is joined and its fds closed), waits until every
///    accepted shared task has finished, drains and joins the blocking pool, stops and joins the
///    workers (jobs that arrive later go to Swift's global executor, never lost), and resumes the
///    callers waiting for shutdown.
/// 3. A call from inside the manager (a worker or blocking thread, or a task started by
///    `taskShared`) cannot wait for itself: it closes admission, starts the teardown and returns.
///    Calls from outside wait for the teardown; the first of them joins the teardown thread, so
///    when it returns no thread of the manager is left.
/// `deinit` of a manager never shut down starts the same teardown without waiting.
///
/// In a child made by `fork()` without `exec`, the manager copied from the parent has no threads:
/// every submit throws `.shutDown`, sleeps return at once, and shutdown does nothing there.
import CShims
import Logging
import Synchronization

public final class ThreadPoolTaskManager: VirtualTaskManager, TaskExecutor, _BlockingBridge {
  let core: ManagerCore
  /// `core.workers`, unretained: `core` owns it for the manager's life. `enqueue` runs for every
  /// job from every thread; a retain there would bounce the pool's refcount between threads.
  private let pool: Unmanaged<WorkerPool>
  /// `core.blocking`, unretained for the same reason (`core` owns it for the manager's life).
  private let blockingPool: Unmanaged<BlockingPool>

  /// Starts the reactor and the workers (the blocking pool starts threads on demand).
  /// Throws `.systemCallFailed` when an fd cannot be had and `.spawnFailed` when a thread is
  /// refused, having stopped and closed everything it started.
  public init(configuration: Configuration = .init()) throws(WasiThreadError) {
    do {
      core = try ManagerCore(configuration: configuration)
    } catch {
      configuration.logger.managerStartFailed(pool: "reactor", error: error)
      throw error
    }
    pool = Unmanaged.passUnretained(core.workers)
    blockingPool = Unmanaged.passUnretained(core.blocking)
    do {
      try core.workers.start(executor: self.asUnownedTaskExecutor())
    } catch {
      core.abortStartup()
      core.logger.managerStartFailed(pool: "workers", error: error)
      throw error
    }
  }

  deinit {
    if core.isForkedChild { return }  // the threads live in the parent, not here
    core.startShutdown(waitable: false)
  }

  // MARK: TaskExecutor

  public func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    pool._withUnsafeGuaranteedRef { $0.enqueue(job) }
  }

  // MARK: VirtualTaskManager

  public func sleepNow(_ duration: Duration) async {
    let nanoseconds = duration.saturatingNanoseconds
    if core.isForkedChild { return }  // no reactor thread in a forked child
    if nanoseconds <= 0 {
      // Exactly one yield. On our worker, the yield's continuation job goes behind the queue
      // (not into the LIFO slot), so every job queued before it runs first.
      core.workers.deferCurrentWorkerNextEnqueue()
      await Task.yield()
      return
    }
    await core.reactor.sleep(nanoseconds: nanoseconds)
  }

  /// Runs `task` as a `Task` whose executor preference is this manager. Called from inside a
  /// task, the new task is created before this returns and inherits that task's priority and
  /// task-local values, as `Task.init` does. Called from outside any task, one of the workers
  /// creates it shortly after (there is nothing to inherit). Either way the task is accepted
  /// when this returns: shutdown runs it. Throws `.shutDown` once shutdown has begun.
  public func taskShared(_ task: @escaping @Sendable () async -> Void) throws(WasiThreadError) {
    try core.admitShared()
    startAdmitted(task)
  }

  /// Starts an admitted `taskShared` task now.
  @inline(__always)
  private func startAdmitted(_ task: @escaping @Sendable () async -> Void) {
    // From outside any task (a plain thread), a worker creates the task: it is then allocated
    // and freed on one thread (see `WorkerPool.startNextSpawn`). From inside a task it is
    // created here, inheriting that task's priority and task-local values as `Task.init` does.
    if !isInsideTask(),
      pool._withUnsafeGuaranteedRef({ $0.currentWorkerIndex() == nil && $0.submitSpawn(task, manager: self) })
    {
      return
    }
    startShared(task)
  }

  /// Runs `task` as a `taskShared` task once `delay` has passed on `ContinuousClock` (never
  /// earlier). Until then it is only a timer in the reactor, with no Swift task and no thread
  /// behind it (about as cheap as `DispatchQueue.asyncAfter` or SwiftNIO's `scheduleTask`), and
  /// ``ScheduledTask/cancel()`` drops it at once. The task is created when due, by the thread that
  /// fires its timer, so it inherits no priority or task-local values from the caller.
  ///
  /// A `delay` of zero or less starts it at once (as `taskShared`); a huge one saturates (never
  /// traps) and the task then starts only at shutdown. Accepted means run: shutdown starts every
  /// pending scheduled task at once, as it ends every pending sleep, and waits for it like any
  /// shared task. A manager with scheduled tasks pending stays alive until they have started or
  /// been cancelled (they need it as their executor), as one with running tasks does.
  /// Throws `.shutDown` once shutdown has begun (the closure is released unrun).
  @discardableResult
  public func taskShared(
    after delay: Duration, _ task: @escaping @Sendable () async -> Void
  ) throws(WasiThreadError) -> ScheduledTask {
    try core.admitShared()
    let nanoseconds = delay.saturatingNanoseconds
    if nanoseconds <= 0 { return scheduleAdmitted(at: nil, task) }
    return scheduleAdmitted(at: Self.deadline(after: nanoseconds), task)
  }

  /// Like ``taskShared(after:_:)``, due at `deadline` on `ContinuousClock` (never earlier). Equal
  /// deadlines start in submission order, also once they have passed: a deadline that passed
  /// is due at once, and its task starts as soon as its timer fires, after every task submitted
  /// earlier for the same instant (a passed deadline is not started on the spot, which would
  /// overtake them).
  @discardableResult
  public func taskShared(
    at deadline: ContinuousClock.Instant, _ task: @escaping @Sendable () async -> Void
  ) throws(WasiThreadError) -> ScheduledTask {
    try core.admitShared()
    // Before this process first read the clock: long past, and equal to every such deadline.
    return scheduleAdmitted(at: Syscall.continuousNanoseconds(deadline) ?? 0, task)
  }

  /// Queues an admitted task for `deadline` (CLOCK_BOOTTIME ns), or starts it now when nil.
  private func scheduleAdmitted(
    at deadline: Int64?, _ task: @escaping @Sendable () async -> Void
  ) -> ScheduledTask {
    if let deadline {
      if let token = core.reactor.schedule(untilNanoseconds: deadline, owner: self, .task(task)) {
        return ScheduledTask(core: core, token: token)
      }
      // The reactor has closed (shutdown is under way): start it now, as shutdown would have.
    }
    startAdmitted(task)
    return ScheduledTask(core: nil, token: nil)
  }

  /// Calls `callback` on one of the workers once `delay` has passed on `ContinuousClock` (never
  /// earlier), with no Swift task at all: until then it is only a timer in the reactor, and when
  /// due a worker calls it between jobs, in (deadline, submission) order with the scheduled tasks
  /// due with it. The cheapest timer this library has, the shape of SwiftNIO's `scheduleTask`
  /// and `DispatchQueue.asyncAfter`: for short, non-blocking work (set a flag, resume a
  /// continuation, submit a task). A callback that blocks holds a worker meanwhile, as a job
  /// that blocks does; use ``taskShared(after:_:)`` for anything that awaits, and
  /// ``taskDedicated(_:)`` for anything that blocks.
  ///
  /// A `delay` of zero or less makes it due at once: a worker calls it soon after, never the
  /// calling thread. A huge one saturates (never traps) and the callback then runs only at
  /// shutdown. ``ScheduledTask/cancel()`` drops it at once, releasing the closure unrun.
  /// Accepted means run: shutdown calls every pending callback at once (as it ends every
  /// pending sleep) and counts it as a shared task until it returned; a pending callback keeps
  /// the manager alive, as a pending scheduled task does. Throws `.shutDown` once shutdown has
  /// begun (the closure is released uncalled).
  @discardableResult
  public func schedule(
    after delay: Duration, _ callback: @escaping @Sendable () -> Void
  ) throws(WasiThreadError) -> ScheduledTask {
    try core.admitShared()
    return scheduleCallAdmitted(at: Self.deadline(after: max(0, delay.saturatingNanoseconds)), callback)
  }

  /// Like ``schedule(after:_:)``, due at `deadline` on `ContinuousClock` (never earlier); a
  /// deadline that passed is due at once, after every callback and task submitted earlier for
  /// the same instant.
  @discardableResult
  public func schedule(
    at deadline: ContinuousClock.Instant, _ callback: @escaping @Sendable () -> Void
  ) throws(WasiThreadError) -> ScheduledTask {
    try core.admitShared()
    return scheduleCallAdmitted(at: Syscall.continuousNanoseconds(deadline) ?? 0, callback)
  }

  /// CLOCK_BOOTTIME now plus `nanoseconds` (>= 0), saturating at `Int64.max`.
  private static func deadline(after nanoseconds: Int64) -> Int64 {
    let (deadline, overflow) = Syscall.continuousNow().addingReportingOverflow(nanoseconds)
    return overflow ? .max : deadline
  }

  /// Queues an admitted callback for `deadline` (CLOCK_BOOTTIME ns).
  private func scheduleCallAdmitted(
    at deadline: Int64, _ callback: @escaping @Sendable () -> Void
  ) -> ScheduledTask {
    if let token = core.reactor.schedule(untilNanoseconds: deadline, owner: self, .call(callback)) {
      return ScheduledTask(core: core, token: token)
    }
    // The reactor has closed (shutdown is under way): hand it to the workers now, as shutdown
    // would have (the pool calls it itself once it has stopped).
    startDue([.call(callback)])
    return ScheduledTask(core: nil, token: nil)
  }

  /// Calls an admitted, due callback (on a worker, or at shutdown) and counts it finished.
  func runCall(_ callback: @Sendable () -> Void) {
    callback()
    core.sharedFinished()
  }

  /// Starts a due scheduled task or calls a due callback, here, when no worker will (the pool
  /// has stopped).
  func start(_ body: DueBody) {
    switch body {
    case .task(let task): startShared(task.run)
    case .call(let call): runCall(call.run)
    }
  }

  /// Creates the task of an admitted `taskShared` call (on the caller or on a worker).
  func startShared(_ task: @escaping @Sendable () async -> Void) {
    // Unretained: the task holds the manager (its executor preference), which holds `core`.
    // A strong capture would add two atomic refcount operations per task on a shared object.
    unowned(unsafe) let core = self.core
    Task(executorPreference: self) {
      await ManagerCore.$insideManager.withValue(ObjectIdentifier(core)) {
        await task()
      }
      core.sharedFinished()
    }
  }

  public func taskDedicated(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError) {
    if core.isForkedChild { throw .shutDown }
    let submitted: Result<Void, WasiThreadError> = blockingPool._withUnsafeGuaranteedRef { pool in
      do throws(WasiThreadError) {
        try pool.submit(task)
        return .success(())
      } catch {
        return .failure(error)
      }
    }
    try submitted.get()
  }

  /// Like `taskDedicated`, but the closure must start at once on an idle or a new blocking
  /// thread, never wait in the queue: at `maxBlockingThreads` it throws `.resourceExhausted`, and
  /// a refused thread throws `.spawnFailed`. For work that others may wait on (guest threads).
  public func taskDedicatedNow(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError) {
    if core.isForkedChild { throw .shutDown }
    try core.blocking.submit(task, startNow: true)
  }

  public func threadParallelism() throws(WasiThreadError) -> Int {
    core.parallelism
  }

  // MARK: more

  /// Stops accepting work, runs everything accepted, and releases every thread and fd.
  /// Idempotent and safe from several callers at once. Called from inside this manager (one of
  /// its threads, or a `taskShared` task) it cannot wait for itself: it stops admission, starts
  /// the teardown and returns at once.
  public func shutdownGracefully() async {
    if core.isForkedChild { return }  // nothing of the manager runs in a forked child
    let inside = core.isCallerInside()
    await core.shutdown(inside: inside)
  }

  /// A snapshot of pools, queues and counters.
  public func metrics() -> Metrics {
    core.metrics()
  }

  /// Waits until `fd` is readable (or hung up / in error: the next read tells which).
  /// Throws `CancellationError` when the task is cancelled, `.shutDown` at shutdown, and
  /// `.systemCallFailed(name: "epoll_ctl", ...)` for an fd that cannot be watched.
  public func readable(_ fd: Int32) async throws {
    if core.isForkedChild { throw WasiThreadError.shutDown }
    try await core.reactor.wait(fd: fd, events: UInt32(VT_EPOLLIN | VT_EPOLLRDHUP))
  }

  /// Waits until `fd` is writable (or in error). Same outcomes as ``readable(_:)``.
  public func writable(_ fd: Int32) async throws {
    if core.isForkedChild { throw WasiThreadError.shutDown }
    try await core.reactor.wait(fd: fd, events: UInt32(VT_EPOLLOUT))
  }

  /// True when the calling thread is one of this manager's workers or blocking threads.
  public var ownsCurrentThread: Bool {
    core.workers.currentWorkerIndex() != nil || core.blocking.isCurrentThreadInPool
  }

  /// Runs `operation` on the workers and blocks the calling thread until it returns. Called on one
  /// of this manager's worker threads, it throws `.unsupported` at once instead of blocking a
  /// worker the operation may need (a deadlock with tokio): `await` the work there instead.
  public func _spawnAndBlockOn<T: Sendable>(
    _ operation: @escaping @Sendable () async -> T
  ) throws(WasiThreadError) -> T {
    if core.workers.currentWorkerIndex() != nil { throw .unsupported }
    let box = BlockingResult<T>()
    try taskShared {
      box.fulfil(await operation())
    }
    return box.wait()
  }
}

/// The state the threads share; the public class is a thin facade over it.
final class ManagerCore: @unchecked Sendable {  // mutable state: atomics, and `lifecycleLock` below
  let workers: WorkerPool
  let blocking: BlockingPool
  let reactor: Reactor
  let parallelism: Int
  let namePrefix: String
  /// `Configuration.logger` with `manager` metadata; rare events only (`Logging.swift`).
  let logger: Logger

  /// Bit 0: admission closed. Bits 1...: shared tasks accepted so far (it only grows). Only
  /// submitting threads write it: tasks finishing on the workers count themselves elsewhere
  /// (`WorkerPool.countSharedFinished`), so a flood of submissions from one thread does not
  /// bounce this cache line against every finishing task (W2). On a cache line of its own, so
  /// that its writes do not invalidate `awaitingDrain` and the references above, which every
  /// finishing task and callback reads (measured: W3 0.56/0.48 -> 0.63/0.64 M/s with the
  /// `Worker` padding; W2 within noise).
  private let padding0 = CacheLinePadding()
  private let admitted = Atomic<Int>(0)
  private let padding1 = CacheLinePadding()
  /// Set by the teardown, after admission closed, before it waits for the shared tasks: from
  /// then on each finishing task signals `lifecycleLock` (sequentially consistent with the
  /// finished counts, so the teardown never misses the last one).
  private let awaitingDrain = Atomic<Bool>(false)

  enum Lifecycle { case running, draining, stopped }
  /// Locking rule: `lifecycle`, `waiters` and `teardownThread` only under this lock; it also
  /// signals the teardown thread when the last shared task finishes.
  private let lifecycleLock = ConditionLock()
  private var lifecycle = Lifecycle.running
  private var waiters: [CheckedContinuation<Void, Never>] = []
  private var teardownThread: OSThread?

  @TaskLocal static var insideManager: ObjectIdentifier?

  /// The fork generation at creation; a different current value means this is a forked child,
  /// where none of the manager's threads exist: it then refuses work (`.shutDown`), sleeps return
  /// at once, and shutdown and deinit do nothing (the parent's manager is unaffected).
  private let forkGeneration = vt_fork_generation()
  var isForkedChild: Bool { vt_fork_generation() != forkGeneration }

  init(configuration: ThreadPoolTaskManager.Configuration) throws(WasiThreadError) {
    let parallelism = Parallelism.available()
    self.parallelism = parallelism
    namePrefix = configuration.threadNamePrefix
    var logger = configuration.logger
    logger[metadataKey: "manager"] = "\(namePrefix)"
    self.logger = logger
    let workerCount = max(1, configuration.workerThreads ?? parallelism)
    let maxBlocking = max(1, configuration.maxBlockingThreads ?? max(200, 100 * parallelism))
    workers = WorkerPool(count: workerCount, namePrefix: namePrefix)
    reactor = try Reactor(threadName: "\(namePrefix)-reactor", batcher: workers)
    workers.timers = reactor
    blocking = BlockingPool(
      maxThreads: maxBlocking, keepAlive: configuration.blockingKeepAlive, namePrefix: namePrefix,
      logger: logger)
  }

  /// Init failed after the reactor started: undo it; the facade's deinit then does nothing.
  func abortStartup() {
    lifecycleLock.withLock { lifecycle = .stopped }
    admitted.bitwiseOr(1, ordering: .sequentiallyConsistent)
    blocking.shutdownAndJoin()
    reactor.close()
  }

  // MARK: admission

  func admitShared() throws(WasiThreadError) {
    if isForkedChild { throw .shutDown }
    var current = admitted.load(ordering: .relaxed)
    while true {
      if current & 1 != 0 {
        logger.submitRejected(pool: "workers", reason: .shutDown)
        throw .shutDown
      }
      let (exchanged, original) = admitted.weakCompareExchange(
        expected: current, desired: current + 2,
        successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed)
      if exchanged { return }
      current = original
    }
  }

  /// `ScheduledTask.cancel`: true when this call removed the task before it started.
  func cancelScheduled(_ token: TimerToken) -> Bool {
    guard reactor.cancelScheduled(token) else { return false }
    sharedFinished()  // it was admitted as a shared task: it ends here
    return true
  }

  func sharedFinished() {
    workers.countSharedFinished()
    if awaitingDrain.load(ordering: .sequentiallyConsistent) {
      // The teardown is waiting: let it re-count.
      lifecycleLock.withLock { lifecycleLock.broadcast() }
    }
  }

  /// Shared tasks accepted so far (final once admission is closed).
  private var admittedCount: Int { admitted.load(ordering: .sequentiallyConsistent) >> 1 }

  func isCallerInside() -> Bool {
    workers.currentWorkerIndex() != nil || blocking.isCurrentThreadInPool
      || ManagerCore.insideManager == ObjectIdentifier(self)
  }

  // MARK: shutdown

  func shutdown(inside: Bool) async {
    enum Next { case done, wait, waitAndJoin }
    let next: Next = lifecycleLock.withLock {
      switch lifecycle {
      case .stopped: return .done
      case .draining: return inside ? .done : .wait
      case .running:
        startTeardownLocked(joinable: !inside)
        return inside ? .done : (teardownThread != nil ? .waitAndJoin : .wait)
      }
    }
    if next == .done { return }
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let stopped: Bool = lifecycleLock.withLock {
        if lifecycle == .stopped { return true }
        waiters.append(c)
        return false
      }
      if stopped { c.resume() }
    }
    if next == .waitAndJoin {
      let thread: OSThread? = lifecycleLock.withLock {
        defer { teardownThread = nil }
        return teardownThread
      }
      thread?.join()
    }
  }

  /// Used by deinit: start the teardown if nobody did, without waiting.
  func startShutdown(waitable: Bool) {
    lifecycleLock.withLock {
      if lifecycle == .running { startTeardownLocked(joinable: waitable) }
    }
  }

  /// Closes admission and starts the teardown thread (lock held, lifecycle == .running).
  private func startTeardownLocked(joinable: Bool) {
    lifecycle = .draining
    admitted.bitwiseOr(1, ordering: .sequentiallyConsistent)
    blocking.close()
    let result = OSThread.spawn(name: "\(namePrefix)-stop") { [self] in self.teardown() }
    switch result {
    case .success(let thread):
      if joinable { teardownThread = thread } else { thread.detach() }
    case .failure(let error):
      // No thread for the teardown: run it on Swift's global executor (it blocks one of its
      // threads while tasks drain) rather than never finishing.
      let errno = error.code
      Task.detached { [self] in
        self.logger.threadSpawnFailed(
          pool: "teardown", thread: "\(self.namePrefix)-stop", errno: errno, outcome: "global-executor")
        self.teardown()
      }
    }
  }

  private func teardown() {
    let started = ContinuousClock.now
    logger.shutdownStarted(metrics())
    reactor.close()
    let accepted = admittedCount  // admission is closed: final
    awaitingDrain.store(true, ordering: .sequentiallyConsistent)
    lifecycleLock.withLock {
      while workers.sharedFinishedCount < accepted { lifecycleLock.wait() }
    }
    blocking.shutdownAndJoin()
    workers.stopAndJoin()
    logger.shutdownFinished(metrics(), after: ContinuousClock.now - started)
    let toResume: [CheckedContinuation<Void, Never>] = lifecycleLock.withLock {
      lifecycle = .stopped
      defer { waiters.removeAll() }
      return waiters
    }
    for c in toResume { c.resume() }
  }

  // MARK: metrics

  func metrics() -> ThreadPoolTaskManager.Metrics {
    let b = blocking.snapshot()
    let r = reactor.snapshot()
    let finished = workers.sharedFinishedCount
    return .init(
      workerThreads: workers.workers.count,
      blockingThreads: b.threads, blockingThreadsBusy: b.busy, blockingThreadsIdle: b.idle,
      queuedSharedJobs: workers.queuedJobs, queuedBlockingJobs: b.queued,
      completedSharedTasks: finished,
      completedSharedJobs: workers.jobsRun,
      completedBlockingJobs: b.completed,
      liveSharedTasks: max(0, admittedCount - finished),
      spawnFailures: b.spawnFailures,
      pendingTimers: r.pendingTimers, registeredFDs: r.registeredFDs)
  }
}

extension ThreadPoolTaskManager: ScheduledTaskStarter {
  /// The workers create the tasks, in order (`WorkerPool.submitDue`); once the pool is gone
  /// they are created here, and their jobs go to Swift's global executor.
  func startDue(_ batch: [TimerPayload?]) {
    if core.workers.submitDue(batch, manager: self) { return }
    for case let body? in batch.lazy.map({ $0?.due }) { start(body) }
  }
}

/// A task from ``ThreadPoolTaskManager/taskShared(after:_:)`` that may not have started yet.
public struct ScheduledTask: Sendable {
  /// Nil when the task was started at once (nothing to cancel).
  let core: ManagerCore?
  let token: TimerToken?

  /// Cancels the task if it has not started. Returns true when this call removed it: it will
  /// never run, and its closure is released before this returns. Returns false when it has
  /// already started (its deadline passed, or shutdown started it) or was cancelled before. A
  /// task that has started is not cancelled by this: use Swift task cancellation inside it.
  @discardableResult
  public func cancel() -> Bool {
    guard let token else { return false }
    return core?.cancelScheduled(token) ?? false
  }
}

@inline(__always)
private func isInsideTask() -> Bool {
  withUnsafeCurrentTask { $0 != nil }
}
