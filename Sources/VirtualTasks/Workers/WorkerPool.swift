/// The fixed worker pool that runs async jobs (`taskShared` bodies and their children).
///
/// N worker threads, fixed for the pool's life. Each worker owns a `LocalQueue` (a bounded ring plus
/// a LIFO slot) that it pushes to when a job is enqueued from its own thread; jobs from other
/// threads go to the shared injection queue, and `taskShared` calls from outside any task to the
/// spawn queue (a worker creates those tasks: see `startNextSpawn`). An idle worker takes from the
/// priority queue (reactor wake-ups), its LIFO slot, its ring, the spawn queue, the injection
/// queue (a batch), then steals the oldest half of another worker's ring.
///
/// Idle coordination (the protocol that keeps wake-ups from being lost):
/// - `queued` counts jobs sitting in any queue. An enqueuer pushes, then increments `queued`
///   (sequentially consistent), then reads `searching` and `sleeperCount`; if nobody is searching
///   and somebody sleeps, it wakes exactly one sleeper, which counts as searching from then on.
/// - A worker that finds nothing spins briefly as a searcher, then registers as a sleeper
///   (`sleeperCount += 1`), stops searching, and only then re-reads `queued`. By the total order
///   of those atomics, either the worker sees the new job, or the enqueuer sees the sleeper.
/// - When a searching worker finds a job and was the last searcher, it wakes another sleeper if
///   more work is queued, so parallelism ramps up one worker at a time (no thundering herd).
/// Parked workers sleep on a futex (CShims `vt_park`) and burn no CPU.
///
/// Threads: `enqueue` from any thread; everything else from the owning manager.
import CShims
import Synchronization

final class WorkerPool: @unchecked Sendable {  // mutable state is in Locked (pthread mutex) values and Atomics below
  // The plain `var`s here and in `Worker` are `@exclusivity(unchecked)`: each is touched by one
  // thread only (its worker, or the reactor thread) or written once before the workers start, so
  // Swift's dynamic exclusivity checks (a TLS lookup and an access-set insert per access, about
  // 15% of the submitting thread's time in W1 when the blocking pool had them) buy nothing.
  final class Worker: @unchecked Sendable {  // `local` is a Locked (pthread mutex); `parker` is only touched via vt_park/vt_unpark (atomic)
    let index: Int
    /// Locking rule: the owner pushes/pops under this lock; thieves lock it to steal.
    let local = Locked(LocalQueue())
    let parker: UnsafeMutablePointer<vt_parker>
    /// Set by `deferCurrentWorkerNextEnqueue()`: the next job this worker enqueues goes to the
    /// back of its ring. Only read and written by the worker thread itself.
    @exclusivity(unchecked) var deferNextEnqueue = false
    /// Jobs this worker took (the fairness tick of `nextJob`). Worker thread only.
    @exclusivity(unchecked) var ticks = 0
    /// Jobs taken from the LIFO slot in a row (worker thread only). Capped so that two jobs
    /// that keep waking each other cannot starve the rest of the queue.
    @exclusivity(unchecked) var lifoStreak = 0
    /// Reused when this worker fires due timers (no allocation per fire). Worker thread only.
    @exclusivity(unchecked) var timerScratch: [TimerPayload?] = []
    /// While this worker fires due timers, the jobs they resume collect in `timerJobs` (reused)
    /// and reach the priority queue together. Worker thread only.
    @exclusivity(unchecked) var collectingTimerJobs = false
    @exclusivity(unchecked) var timerJobs: [UnownedJob] = []
    /// Whether this worker's batch holds its manager reference (set when the owner fills it,
    /// cleared by the owner only, with its last body or once thieves emptied it). Worker thread
    /// only.
    @exclusivity(unchecked) var batchHoldsManager = false
    /// Reused to carry bodies from the spawn queue (or a victim's batch) to this worker's batch.
    /// Worker thread only.
    @exclusivity(unchecked) var spawnScratch: [SpawnBody?] = []
    /// Set while this worker creates a spawn request's task (`startQuietly`): its first job goes
    /// to `startedJob` and wakes no other worker (this one runs it next). Worker thread only.
    @exclusivity(unchecked) var quietEnqueue = false
    @exclusivity(unchecked) var startedJob: UnownedJob?
    /// Set when `nextJob` ran due callbacks (`schedule(after:)`) and found no job after them:
    /// the loop counts that as work found. Worker thread only.
    @exclusivity(unchecked) var ranCallbacks = false
    /// Enqueues left before `throttleProducer` may wait again after a wait in which the
    /// backlog did not shrink. Worker thread only.
    @exclusivity(unchecked) var throttleCooldown = 0
    /// What this worker, as a thief, last saw of each victim's LIFO slot: the victim's `jobsRun`
    /// then (or -1) and when. Worker thread only.
    @exclusivity(unchecked) var lifoWatch: [(sequence: Int, since: Int64)] = []
    /// `taskShared` tasks that finished on this worker (written by it only; see
    /// `countSharedFinished`).
    let sharedFinished = Atomic<Int>(0)
    // The fields above are the worker's own; the two below are read by other threads all the
    // time (a spinning worker's `hasWork` sums every `batchedSpawns`; thieves read `jobsRun`),
    // each on a cache line of its own, so that those reads do not pull the busy worker's own
    // fields away between its writes.
    private let padding0 = CacheLinePadding()
    /// Spawn requests in this worker's batch (`LocalQueue.spawns`), not created yet: raised by
    /// whoever fills the batch, lowered by whoever takes from it, both under `local`'s lock; read
    /// without it by the idle protocol (`hasWork`) and as the owner's hint.
    let batchedSpawns = Atomic<Int>(0)
    private let padding1 = CacheLinePadding()
    /// Jobs this worker ran, stored after each (relaxed): read by metrics, and by thieves: the
    /// same value, with a job in this worker's LIFO slot, for `lifoStealNanos` means the current
    /// job is a long one.
    let jobsRun = Atomic<Int>(0)
    private let padding2 = CacheLinePadding()
    var thread: OSThread?  // written before the thread starts, read by join only

    init(index: Int) {
      self.index = index
      parker = .allocate(capacity: 1)
      vt_parker_init(parker)
    }
    deinit { parker.deallocate() }
  }

  let workers: [Worker]
  /// Locking rule: any thread pushes, workers pop; `terminated` is set under this lock once every
  /// worker has exited, after which jobs are forwarded to Swift's global executor.
  private let injection = Locked<(queue: JobDeque, terminated: Bool)>((JobDeque(), false))
  /// Jobs resumed by a reactor thread (expired timers, ready fds): served before everything
  /// else, so a wake-up never waits behind a backlog of task starts. Locking rule: under its
  /// lock, with its own `terminated` flag set by `stopAndJoin`.
  private let priority = Locked<(queue: JobDeque, terminated: Bool)>((JobDeque(), false))
  private let priorityCount = Atomic<Int>(0)
  /// While this pool's reactor thread resumes a batch (`beginResumeBatch`), the thread-owner
  /// pointer of that thread, else 0; the jobs it resumes meanwhile collect in `resumeBatch`
  /// (touched by that thread only) and reach the priority queue together at the end. Pushing
  /// them one by one contended with the workers popping: 1000 timers due each millisecond (W5)
  /// kept the reactor thread busy in futex wake-ups of that lock.
  private let batchingOwner = Atomic<UInt>(0)
  @exclusivity(unchecked) private var resumeBatch: [UnownedJob] = []
  /// `taskShared` calls from outside any task: a worker creates each task (see `SpawnQueue`).
  /// Locking rule: under its lock, with its own `terminated` flag set by `stopAndJoin`.
  /// `manager` is held (strongly) while requests are queued: the tasks use it as their executor
  /// preference, so it must outlive them; one reference for the whole queue, not one per request.
  private let spawns = Locked<SpawnQueue>(SpawnQueue())
  /// Stored properties are laid out in declaration order: these paddings keep the atomics that
  /// different threads write on different cache lines (the submitting thread's `spawnCount`, the
  /// workers' per-job `queued`, and the ones only read per job).
  private let padding0 = CacheLinePadding()
  /// Spawn requests in `spawns` (seq_cst: part of the idle protocol, like `queued`, which does
  /// not count them). Its own counter so that the submitting thread's increments share no cache
  /// line with the workers' per-job `queued` traffic; workers subtract a whole batch at once.
  private let spawnCount = Atomic<Int>(0)
  private let padding1 = CacheLinePadding()
  /// Of those, due scheduled tasks (`SpawnQueue.due`): a hint for `nextJob`, relaxed.
  private let dueCount = Atomic<Int>(0)
  /// `taskShared` tasks that finished off the workers (after they exited).
  private let sharedFinishedElsewhere = Atomic<Int>(0)
  /// The thread-owner index a reactor thread marks itself with (`vt_set_thread_owner`).
  static let reactorThreadIndex = -2
  private let padding2 = CacheLinePadding()
  /// Jobs in any queue (seq_cst: part of the idle protocol above); spawn requests are counted in
  /// `spawnCount` instead, and the protocol reads both (`hasWork`).
  private let queued = Atomic<Int>(0)
  private let padding3 = CacheLinePadding()
  private let searching = Atomic<Int>(0)
  private let sleeperCount = Atomic<Int>(0)
  /// Parked workers woken by `wakeOne` so far (tests: which submits wake a worker).
  let wakeUps = Atomic<Int>(0)
  /// Workers parked now, registered as sleepers (tests).
  var parkedWorkers: Int { sleeperCount.load(ordering: .sequentiallyConsistent) }
  /// Indices of parked workers. Locking rule: push/pop under this lock, with `sleeperCount`.
  private let sleepers = Locked<[Int]>([])
  private let stopping = Atomic<Bool>(false)
  private let namePrefix: String
  /// Where jobs run: the manager, as a task executor. Set once before any worker starts.
  @exclusivity(unchecked) private var executor: UnownedTaskExecutor?
  /// The reactor's timers. Set once before any worker starts. One parked worker at a time (the
  /// watcher) claims the earliest deadline, parks until just before it, spins to it and fires the
  /// due timers itself, so a sleep wakes with no thread hop; awake workers fire due timers between
  /// jobs. The reactor's timerfd stays armed as a backstop: whichever comes first pops the
  /// timers, under its lock.
  @exclusivity(unchecked) var timers: (any WorkerTimerSource)? {
    didSet { deadlineHint = timers?.deadlineHint }
  }
  /// `timers.deadlineHint`, held directly: read after every job. Set once before any worker starts.
  @exclusivity(unchecked) private var deadlineHint: DeadlineHint?
  private let timerWatcher = Atomic<Bool>(false)
  /// Sleeps whose resumption a worker fired itself (between jobs, or as the watcher); relaxed.
  let timersFiredByWorkers = Atomic<Int>(0)
  /// How early the watcher's timed park ends before the deadline (learnt from its own wake-ups).
  let wakeMargin = WakeMargin()

  init(count: Int, namePrefix: String) {
    self.namePrefix = namePrefix
    workers = (0..<max(1, count)).map { Worker(index: $0) }
    for worker in workers {
      worker.lifoWatch = Array(repeating: (sequence: -1, since: 0), count: workers.count)
    }
  }

  /// Starts every worker. On a refused thread, stops and joins those already started and throws.
  func start(executor: UnownedTaskExecutor) throws(WasiThreadError) {
    self.executor = executor
    for worker in workers {
      let result = OSThread.spawn(name: "\(namePrefix)-w\(worker.index)") { [self] in
        self.run(worker)
      }
      switch result {
      case .success(let thread):
        worker.thread = thread
      case .failure(let error):
        stopAndJoin()
        throw .spawnFailed(errno: error.code)
      }
    }
  }

  /// Jobs run from the LIFO slot in a row before it yields to the ring (tokio uses 3).
  static let maxLifoStreak = 3
  /// Every this many jobs a worker looks at the shared queues before its own (tokio: 61).
  static let sharedQueueInterval = 61
  /// How long a job may wait in the LIFO slot of a worker busy with one job before an idle
  /// worker steals it. Not at once: stealing the LIFO job that its worker was about to run
  /// (tokio 1.51, whose LIFO stealing was reverted for a 30% loss in message passing) moves
  /// every ping-pong across CPUs. Go steals `runnext` only after letting its owner run for 3 us.
  static let lifoStealNanos: Int64 = 100_000

  // MARK: enqueue (any thread)

  /// Called on a worker of this pool: the next job it enqueues goes to the back of its queue.
  /// `sleepNow(0)` uses it so that its yield lets every queued job run first.
  func deferCurrentWorkerNextEnqueue() {
    if let index = currentWorkerIndex() { workers[index].deferNextEnqueue = true }
  }

  /// Queues the creation of a `taskShared` task for a worker (counted in `queued` like a job).
  /// Returns false once the pool is gone: the caller then creates the task itself.
  func submitSpawn(_ body: @escaping @Sendable () async -> Void, manager: ThreadPoolTaskManager) -> Bool {
    let accepted: Bool = spawns.withLock { state in
      if state.terminated { return false }
      if state.isEmpty { state.manager = manager }
      state.queue.pushBack(SpawnBody(body))
      return true
    }
    guard accepted else { return false }
    spawnCount.wrappingAdd(1, ordering: .sequentiallyConsistent)
    notifyIfNeeded()
    return true
  }

  /// Queues the due scheduled tasks and callbacks of `batch` (a fired timer batch, in order) to
  /// be created or called by the workers (see `SpawnQueue.due`). Returns false once the pool is
  /// gone: the caller then starts them itself.
  func submitDue(_ batch: [TimerPayload?], manager: ThreadPoolTaskManager) -> Bool {
    var count = 0
    let accepted: Bool = spawns.withLock { state in
      if state.terminated { return false }
      if state.isEmpty { state.manager = manager }
      for case let body? in batch.lazy.map({ $0?.due }) {
        state.due.pushBack(body)
        count += 1
      }
      if state.isEmpty { state.manager = nil }  // the batch held no task
      // Counted before the unlock: a `metrics()` that sees them in the due queue (under this
      // lock) also counts them as queued (counted after it, a test under TSan saw 0 of 1000).
      if count > 0 {
        dueCount.wrappingAdd(count, ordering: .relaxed)
        spawnCount.wrappingAdd(count, ordering: .sequentiallyConsistent)
      }
      return true
    }
    guard accepted else { return false }
    if count == 0 { return true }
    // A worker that fired a single one takes it next itself (`nextJob` looks at the due queue
    // right after the priority queue): waking another worker for it only made that one find the
    // queue empty and park again, and on a small machine preempt a busy thread on its way (W5s
    // lateness p50 24-30 ms -> 0.8-1.2 ms in one A/B, no change in a noisier one). Fired elsewhere
    // (the reactor thread, shutdown), or more than one: a sleeper is woken to share them.
    if count > 1 || currentWorkerIndex() == nil { notifyIfNeeded() }
    return true
  }

  func enqueue(_ job: UnownedJob) {
    var quiet = false
    if let index = currentWorkerIndex() {
      let worker = workers[index]
      if worker.collectingTimerJobs {
        worker.timerJobs.append(job)  // a sleeper this worker resumed (`fireDueTimers`)
        return
      }
      quiet = worker.quietEnqueue
      if quiet && worker.startedJob == nil {
        // The first job of the task `startQuietly` is creating: handed straight back to it.
        worker.startedJob = job
        queued.wrappingAdd(1, ordering: .sequentiallyConsistent)  // `run` counts it out
        return
      }
      // A yield (`sleepNow(0)`) goes behind the others, not into the LIFO slot, or it would
      // run again at once.
      let isYield = worker.deferNextEnqueue
      worker.deferNextEnqueue = false
      let overflow: [UnownedJob]? = worker.local.withLock { local in
        if isYield {
          if local.pushBack(job) { return nil }
          return [job]
        }
        guard let previous = local.lifo else {
          local.lifo = job
          return nil
        }
        local.lifo = job
        if local.pushBack(previous) { return nil }
        // Ring full: move half of it (and the displaced job) to the injection queue.
        var moved: [UnownedJob] = []
        moved.reserveCapacity(LocalQueue.capacity / 2 + 1)
        local.takeFront(LocalQueue.capacity / 2, into: &moved)
        moved.append(previous)
        return moved
      }
      if let overflow {
        injection.withLock { state in
          for j in overflow { state.queue.pushBack(j) }
        }
      }
      if !quiet, jobBacklog > backlogLimit { throttleProducer(worker) }
    } else if vt_thread_owner_index() == Self.reactorThreadIndex {
      if let owner = vt_thread_owner(),
        UInt(bitPattern: owner) == batchingOwner.load(ordering: .relaxed)
      {
        resumeBatch.append(job)  // our reactor thread, inside a batch
        return
      }
      if !push(CollectionOfOne(job), to: priority) { return }
      priorityCount.wrappingAdd(1, ordering: .relaxed)
    } else {
      if !push(CollectionOfOne(job), to: injection) { return }
    }
    queued.wrappingAdd(1, ordering: .sequentiallyConsistent)
    if !quiet { notifyIfNeeded() }
  }

  /// The jobs resumed by the calling (reactor) thread until `endResumeBatch` are handed over
  /// together. Reactor thread only.
  func beginResumeBatch() {
    guard let owner = vt_thread_owner() else { return }
    batchingOwner.store(UInt(bitPattern: owner), ordering: .relaxed)
  }

  /// Pushes the batch to the priority queue under one lock and wakes a worker (which wakes
  /// another while jobs remain). Reactor thread only.
  func endResumeBatch() {
    batchingOwner.store(0, ordering: .relaxed)
    let count = resumeBatch.count
    if count == 0 { return }
    if push(resumeBatch, to: priority) {
      priorityCount.wrappingAdd(count, ordering: .relaxed)
      queued.wrappingAdd(count, ordering: .sequentiallyConsistent)
      notifyIfNeeded()
    }
    resumeBatch.removeAllRetainingSmallStorage()
  }

  /// Pushes `jobs` to a shared queue under one lock and returns true, or, once `stopAndJoin`
  /// terminated it (the pool is gone), runs them on Swift's global executor rather than lose
  /// them and returns false.
  @inline(__always)
  private func push<Jobs: Sequence<UnownedJob>>(
    _ jobs: Jobs, to shared: Locked<(queue: JobDeque, terminated: Bool)>
  ) -> Bool {
    let accepted: Bool = shared.withLock { state in
      if state.terminated { return false }
      for job in jobs { state.queue.pushBack(job) }
      return true
    }
    if !accepted {
      for job in jobs { globalConcurrentExecutor.enqueue(ExecutorJob(job)) }
    }
    return accepted
  }

  /// Jobs queued across the pool, spawn requests not counted (approximate: a relaxed load).
  @inline(__always)
  private var jobBacklog: Int { queued.load(ordering: .relaxed) }

  /// Whether a pending sleep's deadline has passed (the reactor's hint: a relaxed load, and a
  /// clock read only while a sleep is pending).
  @inline(__always)
  private func timersDue() -> Bool {
    guard let hint = deadlineHint else { return false }
    let deadline = hint.value.load(ordering: .relaxed)
    return deadline != .max && deadline <= Syscall.continuousNow()
  }

  /// Whether any job or spawn request is queued: sequentially consistent loads (the idle
  /// protocol's check), or relaxed ones (`relaxed`, for spinning).
  @inline(__always)
  private func hasWork(relaxed: Bool = false) -> Bool {
    if relaxed {
      return queued.load(ordering: .relaxed) > 0 || spawnCount.load(ordering: .relaxed) > 0
        || batchedSpawnCount(relaxed: true) > 0
    }
    return queued.load(ordering: .sequentiallyConsistent) > 0
      || spawnCount.load(ordering: .sequentiallyConsistent) > 0
      || batchedSpawnCount(relaxed: false) > 0
  }

  /// Spawn requests sitting in the workers' batches (see `startNextSpawn`).
  @inline(__always)
  private func batchedSpawnCount(relaxed: Bool) -> Int {
    var total = 0
    if relaxed {
      for worker in workers { total &+= worker.batchedSpawns.load(ordering: .relaxed) }
    } else {
      for worker in workers { total &+= worker.batchedSpawns.load(ordering: .sequentiallyConsistent) }
    }
    return total
  }

  /// Counts a finished `taskShared` task on the calling worker's own counter (no cache line
  /// shared with other threads), or, off the workers, on a shared one.
  @inline(__always)
  func countSharedFinished() {
    if let index = currentWorkerIndex() {
      workers[index].sharedFinished.wrappingAdd(1, ordering: .sequentiallyConsistent)
    } else {
      sharedFinishedElsewhere.wrappingAdd(1, ordering: .sequentiallyConsistent)
    }
  }

  /// `taskShared` tasks finished so far.
  var sharedFinishedCount: Int {
    workers.reduce(sharedFinishedElsewhere.load(ordering: .sequentiallyConsistent)) {
      $0 + $1.sharedFinished.load(ordering: .sequentiallyConsistent)
    }
  }

  /// Jobs queued across the pool above which a job that keeps enqueuing from a worker is slowed
  /// down (`throttleProducer`): for at most 500 us per enqueue.
  private var backlogLimit: Int { 1024 * workers.count }

  /// Back-pressure for a job that enqueues faster than the other workers can run what it
  /// enqueues (a task adding a million TaskGroup children in a loop, W3): its worker yields the
  /// CPU, for at most 500 us per enqueue, until the backlog is down to half the limit. Without
  /// it the backlog grew to the whole million (about 1 GB of tasks), and each completing child,
  /// which Swift's runtime finds by walking its group's list, took cache misses across that
  /// gigabyte: 0.08 M/s. Only while another worker is awake to drain the queues; never on a
  /// single-worker pool, and it gives up as soon as the backlog stops shrinking for 100 us (the
  /// others may be blocked, e.g. on a lock the producer holds: a parent task cancelling 100k
  /// children holds its status lock, which each child needs to finish), after which this worker
  /// enqueues 1024 more jobs before it may wait again.
  private func throttleProducer(_ worker: Worker) {
    if workers.count < 2 { return }
    if worker.throttleCooldown > 0 {
      worker.throttleCooldown -= 1
      return
    }
    var now = vt_clock_ns(Int32(VT_CLOCK_MONOTONIC))
    let deadline = now &+ 500_000
    var lowest = jobBacklog
    var lastProgress = now
    while lowest > backlogLimit / 2 {
      if sleeperCount.load(ordering: .relaxed) >= workers.count - 1 { return }  // nobody else awake
      _ = sched_yield()
      now = vt_clock_ns(Int32(VT_CLOCK_MONOTONIC))
      let backlog = jobBacklog
      if backlog < lowest {
        lowest = backlog
        lastProgress = now
      } else if now &- lastProgress > 100_000 {
        worker.throttleCooldown = 1024  // stalled: the others cannot drain now
        return
      }
      if now >= deadline { return }
    }
  }

  /// The index of the calling worker of this pool, or nil.
  @inline(__always)
  func currentWorkerIndex() -> Int? {
    if vt_thread_owner() == Unmanaged.passUnretained(self).toOpaque() {
      return vt_thread_owner_index()
    }
    return nil
  }

  @inline(__always)
  private func notifyIfNeeded() {
    if searching.load(ordering: .sequentiallyConsistent) == 0
      && sleeperCount.load(ordering: .sequentiallyConsistent) > 0
    {
      wakeOne()
    }
  }

  private func wakeOne() {
    let index: Int? = sleepers.withLock { stack in
      guard let i = stack.popLast() else { return nil }
      sleeperCount.wrappingSubtract(1, ordering: .sequentiallyConsistent)
      // The woken worker counts as searching until it finds work or sleeps again.
      searching.wrappingAdd(1, ordering: .sequentiallyConsistent)
      return i
    }
    if let index {
      wakeUps.wrappingAdd(1, ordering: .relaxed)
      vt_unpark(workers[index].parker)
    }
  }

  // MARK: the worker loop

  private func run(_ worker: Worker) {
    vt_set_thread_owner(Unmanaged.passUnretained(self).toOpaque(), worker.index)
    _ = vt_set_timer_slack(1)  // the timer watcher's timed park must not be late by the 50 us default
    let executor = self.executor!
    var isSearching = false
    var stealBuffer: [UnownedJob] = []
    stealBuffer.reserveCapacity(LocalQueue.capacity)
    var ran = 0

    while true {
      // Awake workers fire the sleeps that are due between their jobs: no reactor thread to
      // wake (the tasks go to the priority queue, and this worker takes the first next).
      var firingElsewhere = false
      if timersDue() { firingElsewhere = !fireDueTimers(worker, wait: false) }
      if let job = nextJob(worker, &stealBuffer) {
        queued.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        foundWork(&isSearching)
        worker.deferNextEnqueue = false
        job.runSynchronously(on: executor)
        ran &+= 1
        worker.jobsRun.store(ran, ordering: .relaxed)
        continue
      }
      if worker.ranCallbacks {
        // Due callbacks ran (no job): work found, as above.
        worker.ranCallbacks = false
        foundWork(&isSearching)
        continue
      }
      worker.jobsRun.store(ran, ordering: .relaxed)
      if stopping.load(ordering: .acquiring) { break }
      // Spin (`Spin`, up to 50 us) as a searcher before parking: ping-pong work and bursts
      // arriving meanwhile cost no wake-up.
      if !isSearching {
        isSearching = true
        searching.wrappingAdd(1, ordering: .sequentiallyConsistent)
      }
      // Due timers are work only when nobody else is firing them: a firer can be stalled for a
      // while (on the reactor's lock, held by a preempted thread outside the pool), and treating
      // its timers as work here turned this spin into a busy loop that kept the CPU from the
      // very thread holding that lock (W5c: 4 ms with the other CPU idle, measured).
      if Spin.until({ hasWork(relaxed: true) || (!firingElsewhere && timersDue()) }) {
        continue
      }
      // Register as a sleeper, stop searching, then re-check (see the protocol above).
      sleepers.withLock { stack in
        stack.append(worker.index)
        sleeperCount.wrappingAdd(1, ordering: .sequentiallyConsistent)
      }
      if isSearching {
        isSearching = false
        searching.wrappingSubtract(1, ordering: .sequentiallyConsistent)
      }
      if hasWork() || stopping.load(ordering: .sequentiallyConsistent) {
        if !leaveSleepers(worker) { isSearching = true }
        continue
      }
      var timeout: Int64 = -1
      var watching = false
      var wakeAt: Int64 = 0
      if let timers,
        timerWatcher.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
      {
        if let deadline = timers.claimEarliest() {
          watching = true
          // Park until `wakeMargin` before the deadline (see `WakeMargin`), then spin to it.
          let now = Syscall.continuousNow()
          wakeAt = max(now, deadline &- wakeMargin.nanoseconds)
          timeout = wakeAt &- now
        } else {
          timerWatcher.store(false, ordering: .releasing)
        }
      }
      let notified = vt_park(worker.parker, timeout) == 1
      if watching, !notified, timeout > 0 {
        wakeMargin.record(lateness: Syscall.continuousNow() &- wakeAt)
      }
      if notified {
        isSearching = true  // the waker counted us as searching
      } else {
        // Timed out just before the earliest deadline: leave the sleepers (or take a wake-up that
        // raced in), spin to the deadline (not when work is waiting for us), then fire the due
        // timers here; this worker runs the first of their tasks next (`fireDueTimers`).
        if leaveSleepers(worker) {
          spinToEarliestDeadline()
        } else {
          isSearching = true
        }
        fireDueTimers(worker, wait: true)
      }
      if watching {
        timers?.releaseClaim()
        timerWatcher.store(false, ordering: .releasing)
      }
    }
    if isSearching { searching.wrappingSubtract(1, ordering: .sequentiallyConsistent) }
    vt_set_thread_owner(nil, -1)
  }

  /// A searching worker that found work stops searching; the last searcher to stop wakes another
  /// worker when work remains, so a burst spreads over the pool one wake-up at a time.
  @inline(__always)
  private func foundWork(_ isSearching: inout Bool) {
    guard isSearching else { return }
    isSearching = false
    let before = searching.wrappingSubtract(1, ordering: .sequentiallyConsistent).oldValue
    if before == 1 && hasWork() { notifyIfNeeded() }
  }

  /// Spins (pausing, then yielding the CPU) until the earliest pending deadline, when it is at
  /// most `WakeMargin.maxNanos` away: the timed park ended `wakeMargin` early on purpose.
  private func spinToEarliestDeadline() {
    guard let deadline = timers?.earliestDeadline() else { return }
    if deadline &- Syscall.continuousNow() > WakeMargin.maxNanos { return }
    Spin.toDeadline({ deadline }, abort: { stopping.load(ordering: .relaxed) })
  }

  /// Fires the due timers from this worker (between jobs, or as the timer watcher). The jobs they
  /// resume collect in `timerJobs` and go to the priority queue together (see below).
  /// Under the reactor's `firing` lock, so that fires hand their jobs over in pop order; with
  /// `wait` false (between jobs) it returns at once when another thread is firing.
  /// Returns false when it did not fire because another thread was firing (`wait` false).
  @discardableResult
  private func fireDueTimers(_ worker: Worker, wait: Bool) -> Bool {
    guard let timers else { return true }
    if wait {
      timers.firingLock.withLock { _ in fireDueTimersLocked(worker, timers) }
      return true
    }
    return timers.firingLock.withLockIfAvailable { _ in fireDueTimersLocked(worker, timers) } != nil
  }

  /// `fireDueTimers` with the reactor's `firing` lock held.
  private func fireDueTimersLocked(_ worker: Worker, _ timers: any WorkerTimerSource) {
    worker.collectingTimerJobs = true
    timers.fireDue(now: Syscall.continuousNow(), buffer: &worker.timerScratch)
    worker.collectingTimerJobs = false
    let count = worker.timerJobs.count
    if count == 0 { return }
    timersFiredByWorkers.wrappingAdd(count, ordering: .relaxed)
    // Into the priority queue, like the reactor's resumptions: served first by every worker, so
    // a wake-up never waits behind a backlog (in this worker's ring, or the injection queue it
    // overflows to, it waited behind 100k spawn requests: 700 ms in W5). This worker takes the
    // first of them next; a sleeper is woken only to share the rest.
    if push(worker.timerJobs, to: priority) {
      priorityCount.wrappingAdd(count, ordering: .relaxed)
      queued.wrappingAdd(count, ordering: .sequentiallyConsistent)
      if count > 1 { notifyIfNeeded() }
    }
    worker.timerJobs.removeAllRetainingSmallStorage()
  }

  /// Takes a registered-but-awake worker out of the sleepers. Returns true when it was still
  /// there. False means a waker already popped it and counted it as searching: its unpark (which
  /// may still be on its way) is consumed here, so that a later park cannot return for it and
  /// count the worker twice, which drove `searching` below zero and stopped every wake-up (found
  /// by the soak). The caller then counts itself as searching.
  private func leaveSleepers(_ worker: Worker) -> Bool {
    let removed: Bool = sleepers.withLock { stack in
      if let at = stack.lastIndex(of: worker.index) {
        stack.remove(at: at)
        sleeperCount.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        return true
      }
      return false
    }
    if !removed { _ = vt_park(worker.parker, -1) }
    return removed
  }

  private func nextJob(_ worker: Worker, _ buffer: inout [UnownedJob]) -> UnownedJob? {
    if priorityCount.load(ordering: .relaxed) > 0,
      let job = priority.withLock({ $0.queue.popFront() })
    {
      priorityCount.wrappingSubtract(1, ordering: .relaxed)
      return job
    }
    if dueCount.load(ordering: .relaxed) > 0, let job = startNextDue(worker) { return job }
    // Every `sharedQueueInterval`-th job, look at the shared queues first (tokio checks its
    // global queue every 61 ticks): a task that keeps re-enqueuing itself locally (a yield loop)
    // must not starve the work submitted from outside. Injected jobs go to the back of the ring,
    // behind the injected jobs it already holds, so they still run in the order they came.
    worker.ticks &+= 1
    if worker.ticks % Self.sharedQueueInterval == 0 {
      if let job = startNextSpawn(worker) { return job }
      moveInjectedToRing(worker, &buffer)
    }
    if let job = popLocal(worker) { return job }
    if let job = startNextSpawn(worker) { return job }
    // A batch from the injection queue: a fair share, at most 32, the rest into the local ring.
    buffer.removeAll(keepingCapacity: true)
    injection.withLock { state in
      let share = min(32, state.queue.count / workers.count + 1)
      var n = 0
      while n < share, let j = state.queue.popFront() {
        buffer.append(j)
        n += 1
      }
    }
    if !buffer.isEmpty {
      let first = buffer[0]
      if buffer.count > 1 {
        worker.local.withLock { local in
          for j in buffer.dropFirst() { _ = local.pushBack(j) }  // fits: the ring was empty
        }
      }
      return first
    }
    // Steal the oldest half of another worker's ring, starting after ourselves, and run it in
    // order. Oldest first matters for TaskGroups: Swift 6.3's runtime appends a child at the
    // tail of its group's list and, when it completes, looks for it from the head, so children
    // completing in creation order cost O(1) each. Newest-first stealing left the oldest
    // children queued at the head and made every completion walk past them. (What keeps W3
    // fast is the producer's back-pressure in `throttleProducer`; this keeps each walk short.)
    //
    // A victim whose ring is empty may still hold a job in its LIFO slot, behind a long job: it
    // is taken once the victim has been in that same job for `lifoStealNanos`.
    let n = workers.count
    if n > 1 {
      for offset in 1..<n {
        let victim = workers[(worker.index + offset) % n]
        buffer.removeAll(keepingCapacity: true)
        let sequence = victim.jobsRun.load(ordering: .relaxed)
        let watch = worker.lifoWatch[victim.index]
        let mayTakeLifo =
          watch.sequence == sequence && Syscall.continuousNow() &- watch.since >= Self.lifoStealNanos
        var sawLifo = false
        victim.local.withLock { local in
          local.takeFront((local.count + 1) / 2, into: &buffer)
          if buffer.isEmpty, let lifo = local.lifo {
            if mayTakeLifo {
              local.lifo = nil
              buffer.append(lifo)
            } else {
              sawLifo = true
            }
          }
        }
        if sawLifo && watch.sequence != sequence {
          worker.lifoWatch[victim.index] = (sequence, Syscall.continuousNow())
        }
        if !buffer.isEmpty {
          let first = buffer[0]
          if buffer.count > 1 {
            worker.local.withLock { local in
              for j in buffer.dropFirst() { _ = local.pushBack(j) }
            }
          }
          return first
        }
      }
    }
    return stealSpawns(worker)
  }

  /// Moves a few injected jobs (at most 8, and no more than the ring has room for) to the back of
  /// the worker's ring. Only the owner pushes to its ring, so the room it saw cannot shrink.
  private func moveInjectedToRing(_ worker: Worker, _ buffer: inout [UnownedJob]) {
    let room = worker.local.withLock { LocalQueue.capacity - $0.count }
    if room <= 0 { return }
    buffer.removeAll(keepingCapacity: true)
    injection.withLock { state in
      while buffer.count < min(8, room), let j = state.queue.popFront() { buffer.append(j) }
    }
    if buffer.isEmpty { return }
    worker.local.withLock { local in
      for j in buffer { _ = local.pushBack(j) }  // fits: see above
    }
  }

  /// Creates the task of the worker's next spawn request and returns its first job: the oldest
  /// of its batch, or, when the batch is empty, the first of a fair share (at most 32) of the
  /// spawn queue, the rest of which becomes the batch.
  ///
  /// Why workers create these tasks: created by the submitting thread and freed by a worker,
  /// every task took glibc's arena lock from both sides (W2 spent about 40% of its time in that
  /// contention). Why one at a time: a task created right after the previous one finished
  /// reuses its memory while it is still in cache, as the inline-executor floor does; creating
  /// a whole batch before running any cost about twice as much per task in malloc alone.
  ///
  /// Why the batch is stealable (`stealSpawns`): while its owner runs a long job, the requests
  /// behind it must not wait with another worker idle. Two CPU-bound tasks submitted together to
  /// two workers ran one after the other when the batch was private (400 ms for two 200 ms
  /// tasks).
  private func startNextSpawn(_ worker: Worker) -> UnownedJob? {
    if worker.batchHoldsManager {
      var body: SpawnBody?
      var manager: Unmanaged<ThreadPoolTaskManager>?
      var last: ThreadPoolTaskManager?  // the batch's reference, moved out with its last body
      worker.local.withLock { local in
        body = local.spawns.popFirst()
        if body != nil {
          worker.batchedSpawns.wrappingSubtract(1, ordering: .relaxed)
        }
        if local.spawns.isEmpty {
          last = local.spawns.manager.take()
        } else {
          // Safe unretained: only this worker clears the batch's reference (thieves copy it).
          manager = Unmanaged.passUnretained(local.spawns.manager!)
        }
      }
      if last != nil { worker.batchHoldsManager = false }
      if let body {
        if let last {
          return startQuietly(body, manager: last, on: worker)
        }
        return manager!._withUnsafeGuaranteedRef { startQuietly(body, manager: $0, on: worker) }
      }
    }
    guard spawnCount.load(ordering: .relaxed) > 0 else { return nil }
    var batch = worker.spawnScratch
    worker.spawnScratch = []
    let manager: ThreadPoolTaskManager? = spawns.withLock { state in
      let share = min(32, state.queue.count / workers.count + 1)
      while batch.count < share, let body = state.queue.popFront() { batch.append(body) }
      let manager = state.manager
      if state.isEmpty { state.manager = nil }  // the queue's reference moves here
      return manager
    }
    guard !batch.isEmpty, let manager else {
      worker.spawnScratch = batch
      return nil
    }
    spawnCount.wrappingSubtract(batch.count, ordering: .relaxed)
    return startFirst(worker, of: &batch, manager: manager)
  }

  /// Starts the first of `bodies` (not empty) and makes the rest the worker's (empty) batch, with
  /// a reference to their manager, waking a sleeper, if no worker is searching, to share them.
  /// `bodies` is left empty, as the worker's `spawnScratch`.
  private func startFirst(
    _ worker: Worker, of bodies: inout [SpawnBody?], manager: ThreadPoolTaskManager
  ) -> UnownedJob? {
    let first = bodies[0].take()!
    let rest = bodies.count - 1
    if rest > 0 {
      worker.local.withLock { local in
        local.spawns.append(&bodies, from: 1)
        local.spawns.manager = manager
        worker.batchedSpawns.wrappingAdd(rest, ordering: .sequentiallyConsistent)
      }
      worker.batchHoldsManager = true
      notifyIfNeeded()
    }
    bodies.removeAll(keepingCapacity: true)
    worker.spawnScratch = bodies
    return startQuietly(first, manager: manager, on: worker)
  }

  /// Steals the older half (at least one) of another worker's spawn batch, makes it this
  /// worker's batch and starts its first body. Called only when this worker found nothing else,
  /// so its own batch is empty.
  private func stealSpawns(_ worker: Worker) -> UnownedJob? {
    let n = workers.count
    guard n > 1 else { return nil }
    for offset in 1..<n {
      let victim = workers[(worker.index + offset) % n]
      if victim.batchedSpawns.load(ordering: .relaxed) <= 0 { continue }
      var stolen = worker.spawnScratch
      worker.spawnScratch = []
      // A copy of the victim's reference: only the victim clears its own (it may be starting
      // one of its bodies with it, unretained).
      let manager: ThreadPoolTaskManager? = victim.local.withLock { local in
        let take = (local.spawns.count + 1) / 2
        if take == 0 { return nil }
        local.spawns.takeFront(take, into: &stolen)
        victim.batchedSpawns.wrappingSubtract(take, ordering: .relaxed)
        return local.spawns.manager
      }
      guard let manager, !stolen.isEmpty else {
        worker.spawnScratch = stolen
        continue
      }
      return startFirst(worker, of: &stolen, manager: manager)
    }
    return nil
  }

  /// Creates the task of the first due scheduled task (one per lock: two workers taking batches
  /// would start them out of order) and returns its first job. Due callbacks before it are
  /// called here, on this worker, at most `callbacksPerLook` of them (then nil, with
  /// `worker.ranCallbacks` set: the loop fires timers and looks at the priority queue between).
  private func startNextDue(_ worker: Worker) -> UnownedJob? {
    for _ in 0..<Self.callbacksPerLook {
      // The body comes out through a captured local, not the lock's generic result (a closure in
      // a generic tuple is reabstracted through a thunk: a malloc).
      var body: DueBody?
      let manager: ThreadPoolTaskManager? = spawns.withLock { state in
        body = state.due.popFront()
        let manager = state.manager
        if state.isEmpty { state.manager = nil }  // the queue's reference moves here
        return manager
      }
      guard let body, let manager else { return nil }
      dueCount.wrappingSubtract(1, ordering: .relaxed)
      spawnCount.wrappingSubtract(1, ordering: .relaxed)
      switch body {
      case .task(let task):
        return startQuietly(task, manager: manager, on: worker)
      case .call(let call):
        manager.runCall(call.run)
        worker.ranCallbacks = true
        if dueCount.load(ordering: .relaxed) <= 0 { return nil }
      }
    }
    return nil
  }

  /// Due callbacks one look at the due queue calls before the worker fires timers and looks at
  /// its other queues again.
  static var callbacksPerLook: Int { 32 }

  /// Creates a queued body's task on this worker and returns the task's first job, which this
  /// worker runs next: the job is handed back through `startedJob` (`quietEnqueue`), not
  /// through the worker's queue, and wakes no other worker.
  @inline(__always)
  private func startQuietly(
    _ body: SpawnBody, manager: ThreadPoolTaskManager, on worker: Worker
  ) -> UnownedJob? {
    worker.quietEnqueue = true
    manager.startShared(body.run)
    worker.quietEnqueue = false
    if let job = worker.startedJob.take() { return job }
    return popLocal(worker)  // enqueued elsewhere (not expected), or nothing to run
  }

  /// The worker's own next job: its LIFO slot (at most `maxLifoStreak` in a row), then its ring.
  private func popLocal(_ worker: Worker) -> UnownedJob? {
    let lifoAllowed = worker.lifoStreak < Self.maxLifoStreak
    let local: (job: UnownedJob, fromLifo: Bool)? = worker.local.withLock { local in
      if let j = local.lifo {
        if lifoAllowed || local.count == 0 {
          local.lifo = nil
          return (j, true)
        }
        // Streak exhausted: the LIFO job waits its turn at the back.
        local.lifo = nil
        if !local.pushBack(j) { return (j, true) }  // ring full: run it rather than drop it
      }
      return local.popFront().map { ($0, false) }
    }
    if let local {
      worker.lifoStreak = local.fromLifo ? worker.lifoStreak + 1 : 0
      return local.job
    }
    worker.lifoStreak = 0
    return nil
  }

  // MARK: shutdown (owner only)

  /// Stops every worker once its queues are empty, joins them, then forwards any job that arrives
  /// later (or was left behind) to Swift's global executor. Must not be called from a worker.
  func stopAndJoin() {
    stopping.store(true, ordering: .sequentiallyConsistent)
    for worker in workers { vt_unpark(worker.parker) }
    for worker in workers {
      worker.thread?.join()
      worker.thread = nil
    }
    var leftovers: [UnownedJob] = []
    priority.withLock { state in
      state.terminated = true
      while let j = state.queue.popFront() { leftovers.append(j) }
    }
    injection.withLock { state in
      state.terminated = true
      while let j = state.queue.popFront() { leftovers.append(j) }
    }
    for worker in workers {
      worker.local.withLock { local in
        if let j = local.lifo { leftovers.append(j); local.lifo = nil }
        while let j = local.popFront() { leftovers.append(j) }
      }
    }
    for job in leftovers {
      queued.wrappingSubtract(1, ordering: .relaxed)
      globalConcurrentExecutor.enqueue(ExecutorJob(job))
    }
    // Spawn requests left behind: their tasks are created here, and their jobs, finding the
    // injection queue terminated, go to Swift's global executor.
    // Due callbacks left behind are called here.
    var requests: [DueBody] = []
    let manager: ThreadPoolTaskManager? = spawns.withLock { state in
      state.terminated = true
      while let body = state.due.popFront() {
        requests.append(body)
        dueCount.wrappingSubtract(1, ordering: .relaxed)
      }
      while let body = state.queue.popFront() { requests.append(.task(body)) }
      defer { state.manager = nil }
      return state.manager
    }
    for request in requests {
      spawnCount.wrappingSubtract(1, ordering: .relaxed)
      manager?.start(request)
    }
  }

  // MARK: metrics

  var queuedJobs: Int {
    max(0, queued.load(ordering: .relaxed)) + max(0, spawnCount.load(ordering: .relaxed))
      + max(0, batchedSpawnCount(relaxed: true))
  }
  /// Due scheduled tasks waiting, as closures, for a worker to create their tasks (tests).
  var queuedDue: Int { spawns.withLock { $0.due.count } }
  /// Slots allocated by the shared queues (tests check that a drained burst gives them back).
  var sharedQueueCapacities: (spawn: Int, due: Int, injection: Int, priority: Int) {
    let (spawn, due) = spawns.withLock { ($0.queue.capacity, $0.due.capacity) }
    return (spawn, due, injection.withLock { $0.queue.capacity }, priority.withLock { $0.queue.capacity })
  }
  /// Workers counted as searching (tests check it never drifts below zero).
  var searchingCount: Int { searching.load(ordering: .relaxed) }
  var jobsRun: Int { workers.reduce(0) { $0 + $1.jobsRun.load(ordering: .relaxed) } }
}

#if canImport(Glibc)
  import Glibc
#endif

/// What a reactor thread tells the worker pool around a batch of resumptions (see
/// `WorkerPool.beginResumeBatch`).
protocol ResumeBatcher: AnyObject, Sendable {
  func beginResumeBatch()
  func endResumeBatch()
  /// Whether a worker is awake (not parked): it fires due timers between its jobs.
  var workersAwake: Bool { get }
}

extension WorkerPool: ResumeBatcher {
  var workersAwake: Bool { sleeperCount.load(ordering: .relaxed) < workers.count }
}

/// What the worker pool needs from the reactor's timers (see `WorkerPool.timers`).
protocol WorkerTimerSource: AnyObject, Sendable {
  /// The earliest pending deadline (CLOCK_BOOTTIME ns), or nil when none (or closed).
  func earliestDeadline() -> Int64?
  /// Held by a thread from its pop of due timers until their jobs are handed over.
  var firingLock: Locked<Void> { get }
  /// Like `earliestDeadline`, for the timer watcher about to park until it: the reactor then
  /// keeps its own timerfd for that deadline as a late backstop (`Reactor.watchGraceNanos`) until
  /// `releaseClaim`. Nil when there is none, or the reactor thread is awake polling for it.
  func claimEarliest() -> Int64?
  /// Ends the claim: the timerfd is armed at the earliest deadline again if it was not.
  func releaseClaim()
  /// The earliest deadline, published for lock-free checks between jobs.
  var deadlineHint: DeadlineHint { get }
  /// Fires, from the calling thread, every timer due at `now`, collecting into `buffer` (the
  /// caller's reusable scratch: no allocation per fire).
  func fireDue(now: Int64, buffer: inout [TimerPayload?])
}

/// 64 bytes that keep the stored properties around it on different cache lines.
struct CacheLinePadding {
  private let words: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
}

/// A `taskShared` body as queued: in a struct, because a bare closure stored in a generic
/// container (`RingDeque`, `Array`) is converted to the container's abstraction through a
/// reabstraction thunk, one malloc each way. The spawn path made four such conversions per task
/// (queue in, batch out and in, and out to `startShared`): 8 mallocs per `taskShared` from outside
/// instead of 4, and a call through three thunks to run the body.
struct SpawnBody {
  let run: @Sendable () async -> Void
  init(_ run: @escaping @Sendable () async -> Void) { self.run = run }
}

/// A `schedule(after:)` callback as queued (in a struct, as `SpawnBody`).
struct CallBody {
  let run: @Sendable () -> Void
  init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// What comes due from a timer for the workers: a scheduled task to create, or a scheduled
/// callback to call.
enum DueBody {
  case task(SpawnBody)
  case call(CallBody)
}

extension TimerPayload {
  /// The scheduled task or callback this timer starts when due; nil for a sleeper.
  var due: DueBody? {
    switch self {
    case .sleeper: nil
    case .task(let body): .task(SpawnBody(body))
    case .call(let body): .call(CallBody(body))
    }
  }
}

/// `taskShared` calls made outside any task (a plain thread, a blocking-pool thread): the worker
/// that takes one creates its task with `manager.startShared`. `manager` is set while the queue
/// is not empty, keeping the manager (the tasks' executor preference) alive until then.
///
/// `due` holds the scheduled tasks (`taskShared(after:)`) and callbacks (`schedule(after:)`)
/// whose timers fired, in (deadline, submission) order: workers take them one at a time, right
/// after the priority queue, so they start in that order and ahead of other work, the way a
/// resumed sleeper does (a callback is called by the worker that takes it, with no task). The timer's
/// firer only queues them (under the reactor's firing lock): a burst of 100k due timers used to
/// be 100k tasks created at once by one thread, about 1 KB each (W5s: 96 MB peak), while the
/// workers waited for them.
/// The spawn requests a worker took from the spawn queue and has not created yet, oldest first
/// (in its `LocalQueue`, under that lock). The owner creates them one at a time; an idle worker
/// steals the older half. `manager` is their manager, held while any is left: set when the
/// batch is filled, cleared by the owner only (thieves take a copy).
struct SpawnBatch {
  private var bodies: [SpawnBody?] = []
  private var head = 0
  var manager: ThreadPoolTaskManager?

  var count: Int { bodies.count - head }
  var isEmpty: Bool { head == bodies.count }

  /// Appends `source[from...]`, taking the bodies out of it. The batch must be empty.
  mutating func append(_ source: inout [SpawnBody?], from: Int) {
    bodies.removeAll(keepingCapacity: true)
    head = 0
    for i in from..<source.count { bodies.append(source[i].take()) }
  }

  mutating func popFirst() -> SpawnBody? {
    guard head < bodies.count else { return nil }
    let body = bodies[head].take()
    head += 1
    if head == bodies.count {
      bodies.removeAll(keepingCapacity: true)
      head = 0
    }
    return body
  }

  /// Moves the oldest `n` bodies (at most `count`) to the end of `out`.
  mutating func takeFront(_ n: Int, into out: inout [SpawnBody?]) {
    for _ in 0..<min(n, count) { out.append(popFirst()) }
  }
}

struct SpawnQueue {
  var queue = RingDeque<SpawnBody>()
  var due = RingDeque<DueBody>()
  var manager: ThreadPoolTaskManager?
  var terminated = false

  var isEmpty: Bool { queue.isEmpty && due.isEmpty }
}

/// How long before a timer's deadline the timer watcher ends its timed park, learnt from how late
/// its parks actually end: it spins the rest of the way, so a sleep wakes within about a
/// microsecond of its deadline instead of the kernel's wake-up latency after it.
///
/// Why: a timed futex wait (or a timerfd) ends some time after its deadline even with 1 ns timer
/// slack: the kernel's timer interrupt, the scheduler, and on a virtual machine the hypervisor
/// waking an idle vCPU. Measured here (2 vCPUs): 27 to 42 us at the median and about 100 us at
/// p99 for a plain C timerfd loop. Parking until `nanoseconds` before the deadline and spinning
/// from there turns that latency into CPU time instead (at most `maxNanos` per wake-up, and only
/// for the watcher's deadline: other deadlines are the reactor's, which polls within 50 us).
///
/// The estimate is the 90th percentile of the observed lateness, tracked by stochastic
/// approximation: up by 9 steps after a wake-up later than it, down by 1 step otherwise, which
/// settles where 10% of the wake-ups are later. On a machine whose timers fire within a few
/// microseconds it shrinks to that; it stays within `minNanos...maxNanos`.
///
/// Threads: `record` by the timer watcher only (one worker at a time, chosen under an atomic);
/// `nanoseconds` by any worker. Relaxed atomics: a stale value only changes how long one spin is.
final class WakeMargin: Sendable {
  static let minNanos: Int64 = 2_000
  static let maxNanos: Int64 = 100_000
  static let initialNanos: Int64 = 50_000
  static let stepNanos: Int64 = 1_000
  private let value = Atomic<Int64>(WakeMargin.initialNanos)

  var nanoseconds: Int64 { value.load(ordering: .relaxed) }

  /// A timed park meant to end at some instant ended `lateness` ns after it.
  func record(lateness: Int64) {
    let current = value.load(ordering: .relaxed)
    let next = lateness > current ? current &+ 9 * Self.stepNanos : current &- Self.stepNanos
    value.store(min(Self.maxNanos, max(Self.minNanos, next)), ordering: .relaxed)
  }
}
