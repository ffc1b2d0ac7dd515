/// The ledger: what was submitted, accepted, rejected, run and ended, kind by kind, and the rules
/// that say whether it balances.
///
/// Every counter is an atomic bumped from any thread (relaxed: totals are read only after every
/// thread that bumps them has been joined or has drained). `Payload` checks each submission on its
/// own: when it is released, its closure must have run exactly once if it was accepted and never if
/// it was rejected.
import Synchronization
import VirtualTasks

final class Counter: Sendable {
  private let atomic = Atomic<Int>(0)
  func add(_ n: Int = 1) { atomic.wrappingAdd(n, ordering: .relaxed) }
  var value: Int { atomic.load(ordering: .relaxed) }
  /// Raises the value to `candidate` when larger (a running maximum).
  func max(_ candidate: Int) {
    var current = atomic.load(ordering: .relaxed)
    while candidate > current {
      let (done, seen) = atomic.weakCompareExchange(
        expected: current, desired: candidate, successOrdering: .relaxed, failureOrdering: .relaxed)
      if done { return }
      current = seen
    }
  }
}

/// The first few unexpected events, word for word, for the verdict.
final class Notes: Sendable {
  private let lines = Locked<[String]>([])
  private let dropped = Atomic<Int>(0)
  func add(_ line: String) {
    let kept = lines.withLock { l -> Bool in
      if l.count >= 20 { return false }
      l.append(line)
      return true
    }
    if !kept { dropped.wrappingAdd(1, ordering: .relaxed) }
  }
  var all: [String] {
    let more = dropped.load(ordering: .relaxed)
    return lines.withLock { $0 } + (more > 0 ? ["... and \(more) more"] : [])
  }
}

/// One kind of submitted work: `taskShared`, `taskDedicated`, `spawnAwait`, `spawnAndBlockOn`,
/// `Task(executorPreference:)`, and tasks on Swift's global executor.
final class SubmitLedger: Sendable {
  let name: String
  let submitted = Counter()
  let accepted = Counter()
  let rejectedShutDown = Counter()
  let rejectedSpawnFailed = Counter()
  let rejectedOther = Counter()
  /// `.unsupported` from `spawnAndBlockOn` on a worker thread: documented, counted apart.
  let unsupported = Counter()
  /// Closure bodies that started, and accepted work that ended (body returned / call returned).
  let ran = Counter()
  let finished = Counter()
  /// Per-item breaches seen by `Payload` and the callers: ran twice, ran after a rejection,
  /// accepted and released without running, `.shutDown` before any shutdown, wrong result.
  let violations = Counter()

  init(_ name: String) { self.name = name }

  var rejected: Int { rejectedShutDown.value + rejectedSpawnFailed.value + rejectedOther.value }

  var problems: [String] {
    var p: [String] = []
    let s = submitted.value
    let a = accepted.value
    if s != a + rejected + unsupported.value {
      p.append(
        "\(name): submitted \(s) != accepted \(a) + rejected \(rejected) + unsupported \(unsupported.value)")
    }
    if ran.value != a { p.append("\(name): ran \(ran.value) != accepted \(a)") }
    if finished.value != a { p.append("\(name): finished \(finished.value) != accepted \(a)") }
    if rejectedOther.value != 0 {
      p.append("\(name): \(rejectedOther.value) rejections with an unexpected error")
    }
    if violations.value != 0 { p.append("\(name): \(violations.value) per-item violations") }
    return p
  }

  var line: String {
    var text = pad(name) + "submitted=\(submitted.value) accepted=\(accepted.value)"
    text +=
      " rejected=\(rejected) (shutDown \(rejectedShutDown.value), spawnFailed \(rejectedSpawnFailed.value)"
    text += ", other \(rejectedOther.value))"
    if unsupported.value > 0 { text += " unsupported-on-worker=\(unsupported.value)" }
    text += " ran=\(ran.value) finished=\(finished.value) violations=\(violations.value)"
    return text + (problems.isEmpty ? "  ok" : "  UNBALANCED")
  }

  /// Counts a typed rejection; `.shutDown` is only legitimate once the epoch began shutting down.
  func reject(_ error: WasiThreadError, epoch: Epoch, notes: Notes) {
    switch error {
    case .shutDown:
      rejectedShutDown.add()
      if !epoch.shutdownStarted {
        violations.add()
        notes.add("\(name): .shutDown from manager \(epoch.number) before its shutdown began")
      }
    case .spawnFailed:
      rejectedSpawnFailed.add()
    default:
      rejectedOther.add()
      notes.add("\(name): rejected with \(error)")
    }
  }
}

/// Every `sleepNow` call: it must return exactly once, never before its deadline unless its task
/// was cancelled or its manager is shutting down.
final class SleepLedger: Sendable {
  let started = Counter()
  let onTime = Counter()
  let cancelled = Counter()
  let atShutdown = Counter()
  let early = Counter()
  let ended = Counter()
  /// Running maximum lateness of on-time sleeps, in microseconds (information, not a rule).
  let maxLateMicros = Counter()

  var problems: [String] {
    var p: [String] = []
    let outcomes = onTime.value + cancelled.value + atShutdown.value + early.value
    if started.value != ended.value { p.append("sleep: started \(started.value) != ended \(ended.value)") }
    if outcomes != ended.value { p.append("sleep: outcomes \(outcomes) != ended \(ended.value)") }
    if early.value != 0 { p.append("sleep: \(early.value) returned before their deadline uncancelled") }
    return p
  }

  var line: String {
    pad("sleep") + "started=\(started.value) on-time=\(onTime.value) cancelled=\(cancelled.value)"
      + " at-shutdown=\(atShutdown.value) early=\(early.value) ended=\(ended.value)"
      + " (max late \(Double(maxLateMicros.value) / 1000) ms)" + (problems.isEmpty ? "  ok" : "  UNBALANCED")
  }
}

/// Every `readable` / `writable` wait: it must end exactly once (ready, cancelled or `.shutDown`).
final class ReadinessLedger: Sendable {
  let started = Counter()
  let ready = Counter()
  let cancelled = Counter()
  let shutDown = Counter()
  let otherError = Counter()
  let ended = Counter()
  /// Cancelled without a cancellation request, or `.shutDown` before shutdown began.
  let violations = Counter()
  /// A single waiter woken as readable with nothing to read (allowed: readiness may be spurious).
  let spurious = Counter()

  var problems: [String] {
    var p: [String] = []
    let outcomes = ready.value + cancelled.value + shutDown.value + otherError.value
    if started.value != ended.value {
      p.append("readiness: started \(started.value) != ended \(ended.value)")
    }
    if outcomes != ended.value { p.append("readiness: outcomes \(outcomes) != ended \(ended.value)") }
    if otherError.value != 0 { p.append("readiness: \(otherError.value) unexpected errors") }
    if violations.value != 0 { p.append("readiness: \(violations.value) violations") }
    return p
  }

  var line: String {
    pad("readiness") + "started=\(started.value) ready=\(ready.value) cancelled=\(cancelled.value)"
      + " shutDown=\(shutDown.value) other-error=\(otherError.value) ended=\(ended.value)"
      + " violations=\(violations.value) spurious=\(spurious.value)"
      + (problems.isEmpty ? "  ok" : "  UNBALANCED")
  }
}

/// Managers: created, shut down (by how many concurrent callers), dropped, released, and what was
/// left behind each time.
final class LifecycleLedger: Sendable {
  let created = Counter()
  let initFailures = Counter()
  let shutdowns = Counter()
  let drops = Counter()
  let outsideCallers = Counter()
  let insideCallers = Counter()
  let maxShutdownMicros = Counter()
  /// Metrics not drained after shutdown, threads of a retired manager still alive, managers
  /// never deallocated.
  let incomplete = Counter()
  let leakedThreads = Counter()
  let released = Counter()

  var problems: [String] {
    var p: [String] = []
    if initFailures.value != 0 { p.append("managers: \(initFailures.value) failed to start") }
    if incomplete.value != 0 {
      p.append("managers: \(incomplete.value) shutdowns left work or timers behind")
    }
    if leakedThreads.value != 0 { p.append("managers: \(leakedThreads.value) retired managers left threads") }
    if released.value != created.value {
      p.append("managers: created \(created.value) but released \(released.value)")
    }
    return p
  }

  var line: String {
    pad("managers") + "created=\(created.value) shutdown=\(shutdowns.value) dropped=\(drops.value)"
      + " released=\(released.value) callers(outside \(outsideCallers.value), inside \(insideCallers.value))"
      + " max-shutdown=\(Double(maxShutdownMicros.value) / 1000) ms incomplete=\(incomplete.value)"
      + " leaked-threads=\(leakedThreads.value)" + (problems.isEmpty ? "  ok" : "  UNBALANCED")
  }
}

/// The whole ledger.
final class Ledger: Sendable {
  let shared = SubmitLedger("shared")
  let dedicated = SubmitLedger("dedicated")
  let spawnAwait = SubmitLedger("spawnAwait")
  let spawnAndBlockOn = SubmitLedger("spawnAndBlockOn")
  let preferred = SubmitLedger("preferred")
  let detached = SubmitLedger("global-task")
  let sleep = SleepLedger()
  let readiness = ReadinessLedger()
  let managers = LifecycleLedger()
  let notes = Notes()

  var submitLedgers: [SubmitLedger] { [shared, dedicated, spawnAwait, spawnAndBlockOn, preferred, detached] }

  /// Work that has not ended yet (used to wait for stragglers on Swift's global executor).
  var unfinished: Int {
    submitLedgers.reduce(0) { $0 + $1.accepted.value - $1.finished.value }
      + (sleep.started.value - sleep.ended.value) + (readiness.started.value - readiness.ended.value)
  }

  var totalSubmitted: Int { submitLedgers.reduce(0) { $0 + $1.submitted.value } }
}

func pad(_ name: String) -> String {
  name.count >= 16 ? name + " " : name + String(repeating: " ", count: 16 - name.count)
}

/// One submission's closure payload: counted while alive; checks its own exactly-once on release.
final class Payload: Sendable {
  static let live = Atomic<Int>(0)
  static let created = Atomic<Int>(0)
  private static let nextID = Atomic<UInt64>(0)

  enum Outcome: Int {
    case pending = 0
    case accepted, rejected, unsupported
  }

  let id: UInt64
  private let ledger: SubmitLedger
  private let notes: Notes
  private let runs = Atomic<Int>(0)
  private let outcome = Atomic<Int>(Outcome.pending.rawValue)

  init(_ ledger: SubmitLedger, _ notes: Notes) {
    self.ledger = ledger
    self.notes = notes
    id = Payload.nextID.wrappingAdd(1, ordering: .relaxed).newValue
    Payload.live.wrappingAdd(1, ordering: .relaxed)
    Payload.created.wrappingAdd(1, ordering: .relaxed)
  }

  /// Called first thing by the closure.
  func ran() {
    ledger.ran.add()
    let before = runs.wrappingAdd(1, ordering: .relaxed).oldValue
    if before != 0 {
      ledger.violations.add()
      notes.add("\(ledger.name): payload \(id) ran \(before + 1) times")
    }
  }

  func settle(_ o: Outcome) { outcome.store(o.rawValue, ordering: .releasing) }

  deinit {
    let o = Outcome(rawValue: outcome.load(ordering: .acquiring)) ?? .pending
    let r = runs.load(ordering: .relaxed)
    switch o {
    case .accepted where r != 1:
      ledger.violations.add()
      notes.add("\(ledger.name): payload \(id) accepted, released after \(r) runs")
    case .rejected where r != 0, .unsupported where r != 0:
      ledger.violations.add()
      notes.add("\(ledger.name): payload \(id) rejected, yet ran \(r) times")
    case .pending:
      ledger.violations.add()
      notes.add("\(ledger.name): payload \(id) released before its submit returned")
    default:
      break
    }
    Payload.live.wrappingSubtract(1, ordering: .relaxed)
  }
}
