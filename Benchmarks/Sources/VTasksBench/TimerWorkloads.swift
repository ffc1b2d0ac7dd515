/// W5..W8: timers. Lateness is the wake-up time minus the deadline, both read from
/// CLOCK_MONOTONIC by the benchmark itself (`nowNanos()`), so every peer is judged by one clock.
import CBenchSupport
import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import VirtualTasks

enum TimerWorkloads {
  static let all: [Workload] = [mass, massScheduled, massCalls, precision, cancel, cancelScheduled, idle]

  /// W5 sleep lengths: spread over [1 ms, 100 ms) with microsecond steps, the same for every peer.
  @inline(__always) static func massDelay(_ i: Int) -> Int64 {
    1_000_000 + Int64(truncatingIfNeeded: (UInt64(i) &* 2_654_435_761) % 99_000) * 1000
  }

  // MARK: W5

  static let mass = Workload(
    "W5", "timer_mass",
    "N concurrent sleeps of 1..100 ms started from an outside thread (vtasks: taskShared + sleepNow; "
      + "Swift: Task.detached + Task.sleep; NIO: scheduleTask; Dispatch: asyncAfter; the floor: the "
      + "same tasks awaiting bare continuations that one thread resumes in deadline order once all "
      + "are suspended, with no timer and no waiting).",
    peers: [.vtasks, .nio, .dispatch, .swift, .continuations],
    metrics: massMetrics
  ) { peer, p, sizes, _ in
    massRun("W5 \(peer)", sizes, lateness: peer != .continuations) { n, record in
      switch peer {
      case .vtasks:
        let manager = p.manager
        for i in 0..<n {
          let d = massDelay(i)
          record.submitting(i)
          try! manager.taskShared {
            let begin = nowNanos()
            await manager.sleepNow(.nanoseconds(d))
            record.woke(i, begin: begin, delay: d)
          }
        }
      case .swift:
        for i in 0..<n {
          let d = massDelay(i)
          record.submitting(i)
          Task.detached {
            let begin = nowNanos()
            try? await Task.sleep(for: .nanoseconds(d))
            record.woke(i, begin: begin, delay: d)
          }
        }
      case .continuations:
        let slots = ContinuationSlots(n)
        let suspended = Counter()
        for i in 0..<n {
          record.submitting(i)
          try! p.manager.taskShared {
            await withUnsafeContinuation { c in
              slots.park(i, c)
              suspended.increment()
            }
            record.finished(i)
          }
        }
        waitUntil(timeoutNanos: 120_000_000_000) { suspended.current >= n }
        for i in deadlineOrder(n) { slots.resume(i) }
      case .nio, .dispatch: massCallbacks(peer, p, n, record)
      default: fatalError("W5 has no \(peer) column")
      }
    }
  }

  /// One run of W5, W5s or W5c: `start` starts N timers, telling `record` when it submits each
  /// and when each wakes; then wall time, lateness percentiles, peak RSS growth, and how many
  /// timers were pending at once (a peer that submits slowly never holds all N: that explains
  /// its RSS and its lateness, see `massMetrics`). `lateness` false: the timers have no deadline.
  static func massRun(
    _ what: String, _ sizes: Sizes, lateness: Bool = true, start: (Int, MassRecord) -> Void
  ) -> [String: Double] {
    let n = sizes.timerMass
    let record = MassRecord(n)
    _ = deadlineOrder(n)  // computed before the window (only the floor uses it)
    let baseline = Probe.startPeakWindow()
    let begin = nowNanos()
    start(n, record)
    record.latch.wait(orFail: what)
    return massResult(wall: nowNanos() - begin, record, baseline, lateness: lateness)
  }

  /// Timer indices in the order their W5 deadlines come when all start together (ties by index).
  static func deadlineOrder(_ n: Int) -> [Int] {
    deadlineOrders.withLock { cache in
      if let order = cache[n] { return order }
      let order = (0..<n).sorted { (massDelay($0), $0) < (massDelay($1), $1) }
      cache[n] = order
      return order
    }
  }

  static let deadlineOrders = Mutex<[Int: [Int]]>([:])

  /// W5's columns for the peers whose timers run a callback (no task per sleep).
  static func massCallbacks(_ peer: Peer, _ p: PeerSet, _ n: Int, _ record: MassRecord) {
    switch peer {
    case .nio:
      let group = p.group
      for i in 0..<n {
        let d = massDelay(i)
        let begin = record.submitting(i)
        group.next().scheduleTask(in: .nanoseconds(d)) {
          record.woke(i, begin: begin, delay: d)
        }
      }
    case .dispatch:
      let queue = DispatchQueue.global()
      for i in 0..<n {
        let d = massDelay(i)
        let begin = record.submitting(i)
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(d))) {
          record.woke(i, begin: begin, delay: d)
        }
      }
    default: fatalError("W5 has no callback column for \(peer)")
    }
  }

  static func massResult(
    wall: Int64, _ record: MassRecord, _ baseline: Int64, lateness: Bool
  ) -> [String: Double] {
    let peakRSS = Probe.peakGrowthMB(since: baseline)
    let pending = record.peakPending()
    var result = [
      "wall": Double(wall) / 1e6,
      "peak_rss": peakRSS,
      "peak_pending": Double(pending) / 1000,
      "rss_per_pending": pending > 0 ? peakRSS * 1_048_576 / Double(pending) : .nan,
    ]
    if lateness {
      let sorted = record.lateness.sorted()
      result["p50"] = percentile(sorted, 50) / 1e3
      result["p99"] = percentile(sorted, 99) / 1e3
      result["max"] = (sorted.last.map(Double.init) ?? .nan) / 1e6
    }
    return result
  }

  static var massMetrics: [MetricSpec] {
    [
      MetricSpec("wall", "wall", "ms", .lower, target: Targets.noWorseThan(.dispatch, .lower)),
      MetricSpec("p50", "lateness p50", "us", .lower, target: Targets.noWorseThan(.nio, .lower)),
      MetricSpec("p99", "lateness p99", "us", .lower, target: Targets.noWorseThan(.nio, .lower)),
      MetricSpec("max", "lateness max", "ms", .lower),
      MetricSpec("peak_rss", "peak RSS growth", "MB", .lower, target: Targets.noWorseThan(.nio, .lower)),
      // Context for the two rows above and the lateness rows: a peer whose submit call is slow
      // is still submitting while its first timers fire, so it never holds all N at once.
      MetricSpec("peak_pending", "timers pending at once, peak", "k", .lower, showsRatio: false),
      MetricSpec(
        "rss_per_pending", "peak RSS growth / peak pending", "B", .lower, showsRatio: false),
    ]
  }

  // MARK: W5s, W5c

  static let massScheduled = massTimers(
    "W5s", "timer_mass_scheduled",
    "W5 with this library's timer API that creates no task until it is due (vtasks: "
      + "taskShared(after:); NIO: scheduleTask; Dispatch: asyncAfter). The sleepNow row is W5."
  ) { manager, n, record in
    for i in 0..<n {
      let d = massDelay(i)
      let begin = record.submitting(i)
      try! manager.taskShared(after: .nanoseconds(d)) {
        record.woke(i, begin: begin, delay: d)
      }
    }
  }

  static let massCalls = massTimers(
    "W5c", "timer_mass_callbacks",
    "W5 with a callback per timer and no task at all, the shape of the NIO and Dispatch columns "
      + "(vtasks: schedule(after:), called on a worker; NIO: scheduleTask; Dispatch: asyncAfter). "
      + "The sleepNow row is W5."
  ) { manager, n, record in
    for i in 0..<n {
      let d = massDelay(i)
      let begin = record.submitting(i)
      try! manager.schedule(after: .nanoseconds(d)) {
        record.woke(i, begin: begin, delay: d)
      }
    }
  }

  /// A W5 variant on one of this library's timer APIs: `vtasks` starts the N timers on the
  /// manager (each with its own closure, so that the closure's cost is the API's alone); NIO and
  /// Dispatch run their callback columns.
  static func massTimers(
    _ id: String, _ name: String, _ description: String,
    vtasks: @escaping @Sendable (ThreadPoolTaskManager, Int, MassRecord) -> Void
  ) -> Workload {
    Workload(id, name, description, peers: [.vtasks, .nio, .dispatch], metrics: massMetrics) {
      peer, p, sizes, _ in
      massRun("\(id) \(peer)", sizes) { n, record in
        switch peer {
        case .vtasks: vtasks(p.manager, n, record)
        case .nio, .dispatch: massCallbacks(peer, p, n, record)
        default: fatalError("\(id) has no \(peer) column")
        }
      }
    }
  }

  // MARK: W6

  static let precision = Workload(
    "W6", "timer_precision",
    "N sequential 1 ms sleeps in one task / callback chain; lateness of each wake-up.",
    peers: [.vtasks, .nio, .dispatch, .swift, .cTimerfd],
    metrics: [
      MetricSpec(
        "p50", "lateness p50", "us", .lower,
        target: Target(text: "<= 1.2x C timerfd floor and < every peer") { m in
          guard let v = m[.vtasks], let floor = m[.cTimerfd] else { return nil }
          let peers = m.filter { !$0.key.isFloor && $0.key != .vtasks }.values
          return v <= 1.2 * floor && peers.allSatisfy { v < $0 }
        }),
      MetricSpec(
        "p99", "lateness p99", "us", .lower,
        target: Target(text: "< every peer") { m in
          guard let v = m[.vtasks] else { return nil }
          return m.filter { !$0.key.isFloor && $0.key != .vtasks }.values.allSatisfy { v < $0 }
        }),
    ]
  ) { peer, p, sizes, _ in
    let n = sizes.precision
    let period: Int64 = 1_000_000
    let samples = Samples(n)
    let latch = Latch(1)
    switch peer {
    case .vtasks:
      let manager = p.manager
      try! manager.taskShared {
        for k in 0..<n {
          let begin = nowNanos()
          await manager.sleepNow(.nanoseconds(period))
          samples[k] = nowNanos() - begin - period
        }
        latch.done()
      }
    case .swift:
      Task.detached {
        for k in 0..<n {
          let begin = nowNanos()
          try? await Task.sleep(for: .nanoseconds(period))
          samples[k] = nowNanos() - begin - period
        }
        latch.done()
      }
    case .nio:
      let chain = NIOChain(loop: p.group.next(), count: n, period: period, samples: samples, latch: latch)
      chain.loop.execute { chain.step(0) }
    case .dispatch:
      let chain = DispatchChain(count: n, period: period, samples: samples, latch: latch)
      chain.queue.async { chain.step(0) }
    case .cTimerfd:
      let r = cb_timerfd_floor(Int32(n), period, samples.base)
      precondition(r == 0, "timerfd floor failed: \(r)")
      latch.done()
    case .inline, .wasmkit, .continuations: fatalError("W6 has no \(peer) column")
    }
    latch.wait(orFail: "W6 \(peer)")
    let sorted = samples.sorted()
    return ["p50": percentile(sorted, 50) / 1e3, "p99": percentile(sorted, 99) / 1e3]
  }

  /// Each callback measures its lateness and schedules the next sleep from the loop itself.
  final class NIOChain: Sendable {
    let loop: any EventLoop
    let count: Int
    let period: Int64
    let samples: Samples
    let latch: Latch

    init(loop: any EventLoop, count: Int, period: Int64, samples: Samples, latch: Latch) {
      self.loop = loop
      self.count = count
      self.period = period
      self.samples = samples
      self.latch = latch
    }

    func step(_ k: Int) {
      let begin = nowNanos()
      loop.scheduleTask(in: .nanoseconds(period)) {
        self.samples[k] = nowNanos() - begin - self.period
        if k + 1 < self.count { self.step(k + 1) } else { self.latch.done() }
      }
    }
  }

  final class DispatchChain: Sendable {
    let queue = DispatchQueue.global()
    let count: Int
    let period: Int64
    let samples: Samples
    let latch: Latch

    init(count: Int, period: Int64, samples: Samples, latch: Latch) {
      self.count = count
      self.period = period
      self.samples = samples
      self.latch = latch
    }

    func step(_ k: Int) {
      let begin = nowNanos()
      queue.asyncAfter(deadline: .now() + .nanoseconds(Int(period))) {
        self.samples[k] = nowNanos() - begin - self.period
        if k + 1 < self.count { self.step(k + 1) } else { self.latch.done() }
      }
    }
  }

  // MARK: W7

  /// Dispatch (and Task.sleep, which Swift's executor hands to Dispatch on Linux) keep cancelled
  /// timers until their deadline: the next measurement waits for them to expire first, so one
  /// peer's lingering timers never count in another's RSS.
  static let lingeringUntil = Atomic<Int64>(0)

  @Sendable static func waitForLingeringTimers(_: Sizes) {
    let until = lingeringUntil.load(ordering: .relaxed)
    let now = nowNanos()
    if until > now {
      progressNote("waiting \((until - now) / 1_000_000_000 + 1) s for cancelled Dispatch timers to expire")
      sleepThread(nanoseconds: until - now)
    }
  }

  static let cancel = Workload(
    "W7", "timer_cancel",
    "N sleeps of 10 s started, then all cancelled: time from the first cancel until every sleep "
      + "has returned (vtasks/Swift: cancel the parent of a TaskGroup; NIO: Scheduled.cancel, "
      + "until every future failed; Dispatch: DispatchWorkItem.cancel; the floor: the same TaskGroup "
      + "awaiting bare continuations); RSS before/after (heap trimmed).",
    peers: [.vtasks, .nio, .swift, .dispatch, .continuations],
    metrics: cancelMetrics,
    afterRun: waitForLingeringTimers
  ) { peer, p, sizes, _ in
    cancelRun(sizes) { n in
      var pending: Int64 = 0
      var elapsed: Int64 = 0
      switch peer {
      case .vtasks:
        let manager = p.manager
        (pending, elapsed) = cancelGroup(on: manager, n, "W7 vtasks", started: {
          manager.metrics().pendingTimers >= n
        }) { _ in
          await manager.sleepNow(.nanoseconds(tenSeconds))
        }
      case .swift:
        let (parent, finished) = swiftSleepingGroup(n) { _ in tenSeconds }
        sleepThread(nanoseconds: 100_000_000)  // the last children reach Task.sleep
        lingeringUntil.store(nowNanos() + tenSeconds + 300_000_000, ordering: .relaxed)
        pending = Probe.rss
        let start = nowNanos()
        parent.cancel()
        finished.wait(orFail: "W7 swift")
        elapsed = nowNanos() - start
      case .continuations:
        let slots = ContinuationSlots(n)
        let started = Counter()
        (pending, elapsed) = cancelGroup(on: p.manager, n, "W7 bare continuations", started: {
          started.current >= n
        }) { i in
          await withTaskCancellationHandler {
            await withUnsafeContinuation { c in
              slots.park(i, c)
              started.increment()
            }
          } onCancel: {
            slots.resume(i)
          }
        }
      case .nio, .dispatch: (pending, elapsed) = cancelCallbacks(peer, p, n, "W7")
      default: fatalError("W7 has no \(peer) column")
      }
      return (pending, elapsed)
    }
  }

  /// One run of W7 or W7s: `measure` starts N timers, cancels them and returns the RSS while they
  /// were pending and the time the cancelling took; RSS before and after (heap trimmed) around it.
  static func cancelRun(_ sizes: Sizes, measure: (Int) -> (pending: Int64, elapsed: Int64)) -> [String: Double] {
    // Cancelled Dispatch timers (and Task.sleep's, which Swift's executor hands to Dispatch) hold
    // their memory until their deadline: let the previous peer's expire before measuring.
    waitForLingeringTimers(sizes)
    let before = Probe.trimmedRSS()
    let (pending, elapsed) = measure(sizes.cancel)
    return cancelResult(before: before, pending: pending, elapsed: elapsed)
  }

  static let tenSeconds: Int64 = 10_000_000_000

  static var cancelMetrics: [MetricSpec] {
    [
      MetricSpec("time", "cancel all", "ms", .lower, target: Targets.below(10, "ms")),
      MetricSpec("rss_before", "RSS before (process)", "MB", .lower, showsRatio: false),
      MetricSpec("rss_pending", "RSS while pending, growth", "MB", .lower),
      MetricSpec(
        "rss_after", "RSS after cancel, growth", "%", .lower,
        target: Target(text: "<= 10% of RSS before") { m in m[.vtasks].map { $0 <= 10 } },
        showsRatio: false),
    ]
  }

  static func cancelResult(before: Int64, pending: Int64, elapsed: Int64) -> [String: Double] {
    let after = Probe.trimmedRSS()
    return [
      "time": Double(elapsed) / 1e6,
      "rss_before": Double(before) / 1_048_576,
      "rss_pending": Double(pending - before) / 1_048_576,
      "rss_after": Double(after - before) / Double(before) * 100,
    ]
  }

  /// W7's columns for the peers whose timers run a callback: start `n` 10 s timers, then cancel
  /// every one. Returns the RSS while pending and the time the cancelling took.
  static func cancelCallbacks(_ peer: Peer, _ p: PeerSet, _ n: Int, _ what: String) -> (pending: Int64, elapsed: Int64) {
    switch peer {
    case .nio:
      let group = p.group
      let failed = Latch(n)
      var scheduled: [Scheduled<Void>] = []
      scheduled.reserveCapacity(n)
      for _ in 0..<n {
        let s = group.next().scheduleTask(in: .nanoseconds(tenSeconds)) {}
        s.futureResult.whenFailure { _ in failed.done() }
        scheduled.append(s)
      }
      flush(group)
      let pending = Probe.rss
      let start = nowNanos()
      for s in scheduled { s.cancel() }
      failed.wait(orFail: "\(what) nio")
      let elapsed = nowNanos() - start
      scheduled = []
      return (pending, elapsed)
    case .dispatch:
      let queue = DispatchQueue.global()
      var items: [DispatchWorkItem] = []
      items.reserveCapacity(n)
      for _ in 0..<n {
        let item = DispatchWorkItem {}
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(tenSeconds)), execute: item)
        items.append(item)
      }
      lingeringUntil.store(nowNanos() + tenSeconds + 300_000_000, ordering: .relaxed)
      let pending = Probe.rss
      let start = nowNanos()
      for item in items { item.cancel() }
      let elapsed = nowNanos() - start
      items = []
      return (pending, elapsed)
    default: fatalError("\(what) has no callback column for \(peer)")
    }
  }

  // MARK: W7s

  static let cancelScheduled = Workload(
    "W7s", "timer_cancel_scheduled",
    "W7 with this library's timer API that creates no task until it is due: N tasks scheduled "
      + "10 s out, then every one cancelled; time until the last cancel returned (vtasks: "
      + "taskShared(after:) + ScheduledTask.cancel, which frees each timer and closure at once; NIO "
      + "and Dispatch as in W7). The sleepNow row is W7.",
    peers: [.vtasks, .nio, .dispatch],
    metrics: cancelMetrics,
    afterRun: waitForLingeringTimers
  ) { peer, p, sizes, _ in
    cancelRun(sizes) { n in
      switch peer {
      case .vtasks:
        let manager = p.manager
        var handles: [ScheduledTask] = []
        handles.reserveCapacity(n)
        for _ in 0..<n { handles.append(try! manager.taskShared(after: .nanoseconds(tenSeconds)) {}) }
        let pending = Probe.rss
        let start = nowNanos()
        var cancelled = 0
        for h in handles where h.cancel() { cancelled += 1 }
        let elapsed = nowNanos() - start
        precondition(cancelled == n, "W7s vtasks: \(n - cancelled) scheduled tasks had started")
        handles = []
        return (pending, elapsed)
      case .nio, .dispatch: return cancelCallbacks(peer, p, n, "W7s")
      default: fatalError("W7s has no \(peer) column")
      }
    }
  }

  /// W7 on this library's workers: a parent task adds `n` children running `child`, waits until
  /// `started` says they are all suspended, then cancels the parent. Returns the RSS while they
  /// are pending and the time from the cancel until the group finished.
  static func cancelGroup(
    on manager: ThreadPoolTaskManager, _ n: Int, _ what: String, started: () -> Bool,
    child: @escaping @Sendable (Int) async -> Void
  ) -> (pending: Int64, elapsed: Int64) {
    let finished = Latch(1)
    let parent = Task(executorPreference: manager) {
      await withDiscardingTaskGroup { group in
        for i in 0..<n { group.addTask { await child(i) } }
      }
      finished.done()
    }
    waitUntil(started)
    let pending = Probe.rss
    let start = nowNanos()
    parent.cancel()
    finished.wait(orFail: what)
    return (pending, nowNanos() - start)
  }

  /// Swift's column of W7 and W8: a detached task whose discarding TaskGroup has `n` children in
  /// `Task.sleep(delay(i))`. Returns once every child has started, with the parent and the latch
  /// its end counts down.
  static func swiftSleepingGroup(
    _ n: Int, delay: @escaping @Sendable (Int) -> Int64
  ) -> (parent: Task<Void, Never>, finished: Latch) {
    let started = Counter()
    let finished = Latch(1)
    let parent = Task.detached {
      await withDiscardingTaskGroup { group in
        for i in 0..<n {
          group.addTask {
            started.increment()
            try? await Task.sleep(for: .nanoseconds(delay(i)))
          }
        }
      }
      finished.done()
    }
    waitUntil { started.current >= n }
    return (parent, finished)
  }

  /// Waits until every loop of `group` has run what was submitted to it before.
  static func flush(_ group: MultiThreadedEventLoopGroup) {
    for loop in group.makeIterator() { try! loop.submit {}.wait() }
  }

  // MARK: W8

  static let idle = Workload(
    "W8", "idle_cpu",
    "N sleeps of an hour pending, nothing else to do: CPU time (getrusage) per second of wall "
      + "time over an idle window, each peer in a fresh child process holding only that peer (in "
      + "one process, Dispatch's own thread woke about once a second, about 0.1 ms/s, and counted "
      + "against every column).",
    peers: [.vtasks, .nio, .dispatch, .swift],
    metrics: [
      MetricSpec("cpu", "CPU per idle second", "ms/s", .lower, target: Targets.below(0.1, "ms/s"))
    ]
  ) { peer, p, sizes, _ in
    ["cpu": IdleChild.measure(peer, threads: p.threads, sizes: sizes)]
  }

  /// W8 in the calling process, with only `peer`'s executor created here: N sleeps of an hour
  /// pending, then CPU per idle second over the window. The child process of `IdleChild` runs it.
  static func idleCPU(_ peer: Peer, threads: Int, sizes: Sizes) throws -> Double {
    let n = sizes.idleSleeps
    let hour: Int64 = 3_600_000_000_000
    @Sendable @inline(__always) func delay(_ i: Int) -> Int64 { hour + Int64(i) * 1_000_000 }
    func measure() -> Double {
      sleepThread(nanoseconds: 200_000_000)  // settle
      let cpu0 = Probe.cpuNanos
      let wall0 = nowNanos()
      sleepThread(nanoseconds: sizes.idleWindowNanos)
      let cpu = Probe.cpuNanos - cpu0
      let wall = nowNanos() - wall0
      return Double(cpu) / 1e6 / (Double(wall) / 1e9)
    }
    switch peer {
    case .vtasks:
      var configuration = ThreadPoolTaskManager.Configuration()
      configuration.workerThreads = threads
      configuration.threadNamePrefix = "bench"
      let manager = try ThreadPoolTaskManager(configuration: configuration)
      let finished = Latch(1)
      let parent = Task(executorPreference: manager) {
        await withDiscardingTaskGroup { group in
          for i in 0..<n { group.addTask { await manager.sleepNow(.nanoseconds(delay(i))) } }
        }
        finished.done()
      }
      waitUntil { manager.metrics().pendingTimers >= n }
      let value = measure()
      parent.cancel()
      finished.wait(orFail: "W8 vtasks")
      return value
    case .swift:
      let (parent, finished) = swiftSleepingGroup(n, delay: delay)
      let value = measure()
      parent.cancel()
      finished.wait(orFail: "W8 swift")
      return value
    case .nio:
      let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
      let scheduled = (0..<n).map { i in group.next().scheduleTask(in: .nanoseconds(delay(i))) {} }
      flush(group)
      let value = measure()
      for s in scheduled { s.cancel() }
      flush(group)
      return value
    case .dispatch:
      let queue = DispatchQueue.global()
      let items = (0..<n).map { _ in DispatchWorkItem {} }
      for (i, item) in items.enumerated() {
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(delay(i))), execute: item)
      }
      let value = measure()
      for item in items { item.cancel() }
      return value
    default: fatalError("W8 has no \(peer) column")
    }
  }
}

/// W7's floor: one continuation slot per child. `park` stores a child's continuation, `resume`
/// (its cancellation handler) resumes it, whichever order they come in. One mutex: the parks all
/// happen before the cancels.
final class ContinuationSlots: @unchecked Sendable {  // `slots` only under `lock`
  private enum Slot {
    case empty
    case parked(UnsafeContinuation<Void, Never>)
    case cancelled
  }
  private let lock = Mutex<Void>(())
  private var slots: [Slot]

  init(_ n: Int) { slots = Array(repeating: .empty, count: n) }

  func park(_ i: Int, _ c: UnsafeContinuation<Void, Never>) {
    let cancelled: Bool = lock.withLock { _ in
      if case .cancelled = slots[i] { return true }
      slots[i] = .parked(c)
      return false
    }
    if cancelled { c.resume() }
  }

  func resume(_ i: Int) {
    let c: UnsafeContinuation<Void, Never>? = lock.withLock { _ in
      if case .parked(let c) = slots[i] {
        slots[i] = .empty
        return c
      }
      slots[i] = .cancelled
      return nil
    }
    c?.resume()
  }
}

/// What one W5-family run records per timer: when the benchmark submitted it (submitting thread),
/// its lateness and when it finished (the thread it fired on). Closures capture this one object.
final class MassRecord: Sendable {
  let latch: Latch
  let lateness: Samples
  let submitted: Samples
  let ended: Samples

  init(_ n: Int) {
    latch = Latch(n)
    lateness = Samples(n)
    submitted = Samples(n)
    ended = Samples(n)
  }

  /// Called just before timer `i` is submitted; returns the time (its `begin` for callbacks).
  @inline(__always) @discardableResult func submitting(_ i: Int) -> Int64 {
    let now = nowNanos()
    submitted[i] = now
    return now
  }

  /// Timer `i`, started at `begin` for `delay` ns, has fired (or its sleep returned).
  @inline(__always) func woke(_ i: Int, begin: Int64, delay: Int64) {
    let now = nowNanos()
    lateness[i] = now - begin - delay
    ended[i] = now
    latch.done()
  }

  /// Timer `i` finished without a deadline (the floor column: no lateness to record).
  @inline(__always) func finished(_ i: Int) {
    ended[i] = nowNanos()
    latch.done()
  }

  /// The most timers submitted and not yet finished at any instant (read after the latch opened).
  func peakPending() -> Int {
    let starts = submitted.sorted()
    let ends = ended.sorted()
    var open = 0
    var peak = 0
    var e = 0
    for s in starts {
      while e < ends.count && ends[e] <= s {
        open -= 1
        e += 1
      }
      open += 1
      peak = max(peak, open)
    }
    return peak
  }
}
