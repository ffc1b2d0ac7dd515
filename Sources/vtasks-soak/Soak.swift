/// The driver: a sequence of managers ("epochs"), each retired after a few seconds with work in
/// flight and submitter threads racing it, then the final accounting.
///
/// Protocol of one epoch:
/// 1. The driver creates a manager with a random configuration and publishes it; submitters pick
///    it up on their next iteration.
/// 2. At the end of its life the driver either shuts it down or drops it:
///    - shutdown: `beginShutdown()` marks the epoch (from then on `.shutDown` and early wakes are
///      legitimate), sometimes a shared task asks for shutdown from inside, and one to three tasks
///      on Swift's global executor call `shutdownGracefully()` concurrently while submitters keep
///      submitting. When they return: metrics must show nothing live, queued or pending, and no
///      thread named after this manager may remain.
///    - drop: the next manager is published and the driver lets go of this one; in-flight work
///      keeps it alive, its last release runs `deinit`, whose teardown must end every thread.
/// 3. After the last epoch: submitters stop and are joined, stragglers on the global executor
///    drain, and payloads, pipes, managers, threads and fds must all be back to zero or baseline.
///
/// The driver is the main thread; the watchdog thread ends the process (exit 3) if the driver
/// stops making progress for longer than `--hang-timeout`.
#if canImport(Glibc)
  import Glibc
#endif
import Dispatch
import Synchronization
import VirtualTasks

/// One manager's life.
final class Epoch: Sendable {
  let number: Int
  let manager: ThreadPoolTaskManager
  let configuration: String
  private let shuttingDown = Atomic<Bool>(false)

  init(number: Int, manager: ThreadPoolTaskManager, configuration: String) {
    self.number = number
    self.manager = manager
    self.configuration = configuration
  }

  /// Thread names of this manager start with this.
  var threadPrefix: String { "vs\(number)-" }

  var shutdownStarted: Bool { shuttingDown.load(ordering: .acquiring) }
  func beginShutdown() { shuttingDown.store(true, ordering: .releasing) }
}

final class Soak: Sendable {
  let options: Options
  let ledger = Ledger()
  let writer = PipeWriter()
  let stopSubmitters = Atomic<Bool>(false)
  private let submittersRunning = Atomic<Int>(0)
  /// Locking rule: the current epoch is read and replaced only under this lock.
  private let current = Locked<Epoch?>(nil)
  /// Milliseconds since `start` at the driver's last sign of life (read by the watchdog).
  private let heartbeat = Atomic<Int>(0)
  private let phase = Locked<String>("starting")
  private let start = ContinuousClock.now
  /// Every manager created, weakly (to prove each is deallocated in the end, and to show the
  /// live ones in a hang report). Locking rule: only under this lock.
  private let managers = Locked<[WeakManager]>([])
  /// Per manager number (driver thread only; a lock keeps the class Sendable).
  private let stallWatches = Locked<[Int: StallWatch]>([:])

  init(options: Options) { self.options = options }

  func currentEpoch() -> Epoch? { current.withLock { $0 } }

  // MARK: the run

  /// Runs the soak; returns the exit status.
  func run() -> Int32 {
    startWatchdog()
    warmUpGlobalExecutor()
    let baselineThreads = Proc.threadCount()
    let baselineFDs = Proc.openFDs()
    if !options.quiet {
      printErr(
        "vtasks-soak: \(options.seconds) s, seed \(options.seed), \(options.submitters) submitters,"
          + " epochs ~\(options.epochSeconds) s, drop rate \(options.dropRate);"
          + " baseline \(baselineThreads) threads, \(baselineFDs.count) fds")
    }
    var rng = SplitMix64(seed: options.seed)
    writer.start()

    var number = 1
    var epoch = makeEpoch(number: number, rng: &rng)
    current.withLock { $0 = epoch }
    submittersRunning.store(options.submitters, ordering: .relaxed)
    let submitters = (0..<options.submitters).map { i in
      SoakThread.spawn(name: "soak-sub\(i)") { [self] in
        self.submitterLoop(index: i)
        submittersRunning.wrappingSubtract(1, ordering: .releasing)
      }
    }

    let end = start + .milliseconds(Int64(options.seconds * 1000))
    var nextProgress = start + .seconds(1)
    while true {
      let life = options.epochSeconds * (0.5 + Double(rng.below(1001)) / 1000)
      let epochEnd = min(end, ContinuousClock.now + .milliseconds(Int64(life * 1000)))
      setPhase("running manager \(epoch.number)")
      while ContinuousClock.now < epochEnd {
        beat()
        threadSleep(milliseconds: 20)
        if ContinuousClock.now >= nextProgress {
          progress(epoch)
          nextProgress = nextProgress + .seconds(1)
          checkStalls()
        }
      }
      if ContinuousClock.now >= end { break }
      number += 1
      if rng.chance(options.dropRate) {
        // Let go of the manager without shutdown; in-flight work holds it until done.
        ledger.managers.drops.add()
        let next = makeEpoch(number: number, rng: &rng)
        current.withLock { $0 = next }
        epoch = next
      } else {
        shutdown(epoch, rng: &rng)
        let next = makeEpoch(number: number, rng: &rng)
        current.withLock { $0 = next }
        epoch = next
      }
    }

    // The last manager goes down with the submitters still racing it.
    shutdown(epoch, rng: &rng)
    setPhase("joining submitters")
    stopSubmitters.store(true, ordering: .releasing)
    let joinStarted = ContinuousClock.now
    var lastCheck = joinStarted
    while submittersRunning.load(ordering: .acquiring) > 0 {
      beat()
      threadSleep(milliseconds: 10)
      if seconds(since: lastCheck) >= 1 {
        lastCheck = .now
        checkStalls()
      }
      if seconds(since: joinStarted) > options.hangTimeout { hang("submitters did not stop") }
    }
    for t in submitters { t.join() }
    current.withLock { $0 = nil }
    _ = consume epoch

    setPhase("draining work on the global executor")
    var lastStallCheck = ContinuousClock.now
    let drained = poll(seconds: options.hangTimeout) {
      if seconds(since: lastStallCheck) >= 1 {
        lastStallCheck = .now
        checkStalls()
      }
      return ledger.unfinished == 0
    }
    if !drained {
      hang("work still unfinished after the last shutdown")
    }
    writer.stop()
    setPhase("settling")
    let settled = poll(seconds: options.settleTimeout) {
      Payload.live.load(ordering: .relaxed) == 0 && Pipe.live.load(ordering: .relaxed) == 0
        && liveManagers().isEmpty && Proc.threads(named: "vs").isEmpty
        && Proc.threadCount() <= baselineThreads && Proc.fdCount() == baselineFDs.count
    }
    _ = settled
    if !options.quiet { progressLine(nil) }
    ledger.managers.released.add(ledger.managers.created.value - liveManagers().count)
    let leftoverThreads = Proc.threads(named: "vs")
    if !leftoverThreads.isEmpty {
      let owners = Set(leftoverThreads.map { $0.prefix { $0 != "-" } })
      ledger.managers.leakedThreads.add(owners.count)
      ledger.notes.add("threads of retired managers still alive: \(leftoverThreads.sorted())")
    }
    return report(baselineThreads: baselineThreads, baselineFDs: baselineFDs)
  }

  /// Swift's global executor (libdispatch) starts its manager thread and opens an epoll fd, an
  /// eventfd and a timerfd on first use, and keeps them for the life of the process: take the
  /// baseline after that, so only what the soak and the managers leave behind counts.
  private func warmUpGlobalExecutor() {
    setPhase("warming up the global executor")
    let done = DispatchSemaphore(value: 0)
    Task.detached { done.signal() }
    done.wait()
    // A timer makes sure the event-loop thread and its fds exist before the baseline.
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { done.signal() }
    done.wait()
    var last = (Proc.threadCount(), Proc.fdCount())
    var stableSamples = 0
    _ = poll(seconds: 3) {
      threadSleep(milliseconds: 50)
      let now = (Proc.threadCount(), Proc.fdCount())
      stableSamples = now == last ? stableSamples + 1 : 0
      last = now
      return stableSamples >= 3
    }
  }

  // MARK: epochs

  private func makeEpoch(number: Int, rng: inout SplitMix64) -> Epoch {
    setPhase("starting manager \(number)")
    var c = ThreadPoolTaskManager.Configuration()
    c.workerThreads = [nil, 1, 2, 3, 4][rng.below(5)]
    c.maxBlockingThreads = [nil, 1, 2, 4, 16][rng.below(5)]
    c.blockingKeepAlive = [.seconds(10), .milliseconds(50), .milliseconds(5), .zero][rng.below(4)]
    c.threadNamePrefix = "vs\(number)"
    let description =
      "workers=\(c.workerThreads.map(String.init) ?? "auto")"
      + " maxBlocking=\(c.maxBlockingThreads.map(String.init) ?? "auto") keepAlive=\(c.blockingKeepAlive)"
    var attempts = 0
    while true {
      beat()
      do throws(WasiThreadError) {
        let manager = try ThreadPoolTaskManager(configuration: c)
        ledger.managers.created.add()
        managers.withLock { $0.append(WeakManager(manager, number: number)) }
        if !options.quiet { printErr("manager \(number): \(description)") }
        return Epoch(number: number, manager: manager, configuration: description)
      } catch {
        ledger.managers.initFailures.add()
        ledger.notes.add("manager \(number): init threw \(error)")
        attempts += 1
        if attempts >= 5 { hang("manager \(number) failed to start 5 times: \(error)") }
        threadSleep(milliseconds: 100)
      }
    }
  }

  /// Shuts `e` down from one to three concurrent outside callers (and sometimes one inside
  /// caller) while the submitters keep submitting, then checks what it left behind.
  private func shutdown(_ e: Epoch, rng: inout SplitMix64) {
    setPhase("shutting down manager \(e.number)")
    let l = ledger.managers
    e.beginShutdown()
    let began = ContinuousClock.now
    if rng.chance(0.3) {
      l.insideCallers.add()
      submitInsideShutdown(e)
      if rng.chance(0.5) { threadSleep(milliseconds: Double(rng.below(2000)) / 1000) }
    }
    let callers = 1 + rng.below(3)
    let done = DispatchSemaphore(value: 0)
    for _ in 0..<callers {
      l.outsideCallers.add()
      Task.detached {
        await e.manager.shutdownGracefully()
        done.signal()
      }
    }
    for _ in 0..<callers {
      while done.wait(timeout: .now() + .seconds(1)) == .timedOut {
        checkStalls()
        if seconds(since: began) > options.hangTimeout {
          hang("shutdownGracefully of manager \(e.number) did not return")
        }
      }
      beat()
    }
    l.shutdowns.add()
    l.maxShutdownMicros.max(Int(milliseconds(began.duration(to: .now)) * 1000))
    let m = e.manager.metrics()
    if m.liveSharedTasks != 0 || m.blockingThreads != 0 || m.pendingTimers != 0 || m.registeredFDs != 0
      || m.queuedBlockingJobs != 0 || m.queuedSharedJobs != 0
    {
      l.incomplete.add()
      ledger.notes.add("manager \(e.number) after shutdown: \(m)")
    }
    // Outside callers joined the teardown thread; one started from inside may still be exiting.
    if !poll(seconds: 5, { Proc.threads(named: e.threadPrefix).isEmpty }) {
      l.leakedThreads.add()
      ledger.notes.add("manager \(e.number) after shutdown: threads \(Proc.threads(named: e.threadPrefix))")
    }
  }

  /// The managers not yet deallocated, by number.
  func liveManagers() -> [(Int, ThreadPoolTaskManager)] {
    managers.withLock { all in all.compactMap { w in w.manager.map { (w.number, $0) } } }
  }

  /// Workers that run nothing for 10 s while jobs wait in their queues have missed a wake-up:
  /// checked once a second for every manager still alive (dropped ones too), reported at once as
  /// a hang with the manager's metrics. Driver thread only.
  private func checkStalls() {
    let limit = min(10, options.hangTimeout)
    for (number, manager) in liveManagers() {
      let m = manager.metrics()
      let stalled = stallWatches.withLock { $0[number, default: StallWatch()].stalled(m, limit: limit) }
      if stalled {
        hang("manager \(number) stalled: \(m.queuedSharedJobs) jobs queued, none run for \(Int(limit)) s")
      }
    }
  }

  // MARK: progress, watchdog, hang

  private func beat() {
    heartbeat.store(Int(milliseconds(start.duration(to: .now))), ordering: .relaxed)
  }

  private func setPhase(_ text: String) {
    phase.withLock { $0 = text }
    beat()
  }

  /// Polls `condition` every 10 ms for up to `seconds`, beating the heart meanwhile.
  private func poll(seconds limit: Double, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(limit * 1000))
    while ContinuousClock.now < deadline {
      if condition() { return true }
      beat()
      threadSleep(milliseconds: 10)
    }
    return condition()
  }

  private func progress(_ e: Epoch) {
    if !options.quiet { progressLine(e) }
  }

  private func progressLine(_ e: Epoch?) {
    let l = ledger
    var text = "[\(String(format1: seconds(since: start)))/\(Int(options.seconds)) s]"
    if let e { text += " mgr \(e.number)" }
    text += " shared \(l.shared.submitted.value) dedicated \(l.dedicated.submitted.value)"
    text += " sleeps \(l.sleep.started.value) waits \(l.readiness.started.value)"
    text += " spawnAwait \(l.spawnAwait.submitted.value) blockOn \(l.spawnAndBlockOn.submitted.value)"
    text += " | live \(Payload.live.load(ordering: .relaxed)) pipes \(Pipe.live.load(ordering: .relaxed))"
    text += " threads \(Proc.threadCount()) fds \(Proc.fdCount())"
    if let e { text += " | \(e.manager.metrics())" }
    printErr(text)
  }

  private func startWatchdog() {
    _ = SoakThread.spawn(name: "soak-watchdog") { [self] in
      let limit = Int(options.hangTimeout * 1000) + 5000
      while true {
        threadSleep(milliseconds: 500)
        let now = Int(milliseconds(start.duration(to: .now)))
        if now - heartbeat.load(ordering: .relaxed) > limit {
          hang("no progress for \(limit / 1000) s while \(phase.withLock { $0 })")
        }
      }
    }
  }

  /// Prints the ledger as it stands, what is still alive, and exits 3.
  func hang(_ what: String) -> Never {
    printErr("vtasks-soak: HANG: \(what)")
    for (number, m) in liveManagers() { printErr("manager \(number) alive: \(m.metrics())") }
    printErr("threads: \(Proc.threadNames().sorted())")
    printLedger()
    for n in ledger.notes.all { print("note: \(n)") }
    print("verdict: HANG (\(what))")
    fflush(nil)
    exit(3)
  }

  // MARK: the report

  private func printLedger() {
    for s in ledger.submitLedgers { print(s.line) }
    print(ledger.sleep.line)
    print(ledger.readiness.line)
    print(ledger.managers.line)
  }

  private func report(baselineThreads: Int, baselineFDs: [(fd: Int32, target: String)]) -> Int32 {
    var problems =
      ledger.submitLedgers.flatMap(\.problems) + ledger.sleep.problems
      + ledger.readiness.problems + ledger.managers.problems
    let livePayloads = Payload.live.load(ordering: .relaxed)
    let livePipes = Pipe.live.load(ordering: .relaxed)
    let finalThreads = Proc.threadCount()
    let finalFDs = Proc.openFDs()
    if livePayloads != 0 { problems.append("payloads: \(livePayloads) still alive") }
    if livePipes != 0 { problems.append("pipes: \(livePipes) still open") }
    if finalThreads > baselineThreads {
      problems.append(
        "threads: \(finalThreads) > baseline \(baselineThreads): \(Proc.threadNames().sorted())")
    }
    if finalFDs.count != baselineFDs.count {
      let before = Set(baselineFDs.map { "\($0.fd)->\($0.target)" })
      let extra = finalFDs.map { "\($0.fd)->\($0.target)" }.filter { !before.contains($0) }
      problems.append("fds: \(finalFDs.count) != baseline \(baselineFDs.count); new: \(extra)")
    }

    print(
      "vtasks-soak: \(String(format1: seconds(since: start))) s, seed \(options.seed),"
        + " \(options.submitters) submitters, \(ledger.managers.created.value) managers")
    printLedger()
    print(
      pad("payloads") + "created=\(Payload.created.load(ordering: .relaxed)) live=\(livePayloads)"
        + (livePayloads == 0 ? "  ok" : "  UNBALANCED"))
    print(
      pad("pipes") + "created=\(Pipe.created.load(ordering: .relaxed)) live=\(livePipes)"
        + " failed=\(Pipe.failed.load(ordering: .relaxed)) writes=\(writer.written.value)"
        + (livePipes == 0 ? "  ok" : "  UNBALANCED"))
    print(
      pad("threads") + "baseline=\(baselineThreads) final=\(finalThreads)"
        + (finalThreads <= baselineThreads ? "  ok" : "  UNBALANCED"))
    print(
      pad("fds") + "baseline=\(baselineFDs.count) final=\(finalFDs.count)"
        + (finalFDs.count == baselineFDs.count ? "  ok" : "  UNBALANCED"))
    for n in ledger.notes.all { print("note: \(n)") }
    if problems.isEmpty {
      print("verdict: BALANCED (\(ledger.totalSubmitted) submissions, every one accounted for)")
      return 0
    }
    for p in problems { print("problem: \(p)") }
    print("verdict: NOT BALANCED (\(problems.count) problems)")
    return 1
  }
}

/// Follows one manager's job counter: stalled when jobs stay queued and none completes.
struct StallWatch {
  private var lastJobs = -1
  private var since = ContinuousClock.now

  mutating func stalled(_ m: ThreadPoolTaskManager.Metrics, limit: Double) -> Bool {
    if m.queuedSharedJobs == 0 || m.completedSharedJobs != lastJobs {
      lastJobs = m.completedSharedJobs
      since = .now
      return false
    }
    return seconds(since: since) >= limit
  }
}

/// A weak reference to a manager, to prove every one is deallocated in the end.
final class WeakManager: @unchecked Sendable {  // written once in init; `weak` loads are atomic
  weak var manager: ThreadPoolTaskManager?
  let number: Int
  init(_ manager: ThreadPoolTaskManager, number: Int) {
    self.manager = manager
    self.number = number
  }
}

extension String {
  /// One decimal place, without Foundation.
  init(format1 value: Double) {
    let tenths = Int((value * 10).rounded())
    self = "\(tenths / 10).\(abs(tenths % 10))"
  }
}
