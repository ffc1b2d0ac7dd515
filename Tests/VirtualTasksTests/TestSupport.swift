import CShims
import Foundation
import Synchronization
import Testing

@testable import VirtualTasks

/// A live payload: counts itself in its test's own counter from init to deinit (a per-test
/// counter, so tests running in parallel cannot disturb each other's ledger).
final class Payload: Sendable {
  let live: Counter
  init(_ live: Counter) {
    self.live = live
    live.add(1)
  }
  deinit { live.add(-1) }
}

/// A ledger of task indices: each must be marked exactly once.
final class Ledger: Sendable {
  private let marks: Locked<[UInt8]>
  init(count: Int) { marks = Locked([UInt8](repeating: 0, count: count)) }
  func mark(_ i: Int) { marks.withLock { $0[i] &+= 1 } }
  var allExactlyOnce: Bool { marks.withLock { $0.allSatisfy { $0 == 1 } } }
  var total: Int { marks.withLock { $0.reduce(0) { $0 + Int($1) } } }
}

/// A countdown that a test awaits (no sleeping and hoping).
final class Countdown: Sendable {
  private let state: Locked<(left: Int, waiters: [CheckedContinuation<Void, Never>])>
  init(_ n: Int) { state = Locked((n, [])) }
  func tick() {
    let ready: [CheckedContinuation<Void, Never>] = state.withLock { s in
      s.left -= 1
      if s.left == 0 { defer { s.waiters.removeAll() }; return s.waiters }
      return []
    }
    for c in ready { c.resume() }
  }
  func wait() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let done: Bool = state.withLock { s in
        if s.left <= 0 { return true }
        s.waiters.append(c)
        return false
      }
      if done { c.resume() }
    }
  }
}

/// Holds one worker of `mgr` with a shared task blocked on the returned gate, and returns once
/// that task is running; `open()` the gate to release the worker. Test-only: it blocks a worker.
func holdAWorker(of mgr: ThreadPoolTaskManager) async throws -> Gate {
  let gate = Gate()
  let started = Countdown(1)
  try mgr.taskShared {
    started.tick()
    gate.wait()
  }
  await started.wait()
  return gate
}

/// A blocking gate for plain threads.
final class Gate: Sendable {
  private let lock = ConditionLockForTests()
  func open() { lock.open() }
  func wait() { lock.wait() }
}

final class ConditionLockForTests: @unchecked Sendable {  // all state under `mutex`/`cond` (pthread)
  private let cond = ConditionLock()
  private var isOpen = false
  func open() { cond.withLock { isOpen = true; cond.broadcast() } }
  func wait() { cond.lock(); while !isOpen { cond.wait() }; cond.unlock() }
}

/// Polls `condition` every millisecond for up to `seconds` (for effects with no event to await,
/// like an OS thread disappearing from /proc). Returns whether it became true. Suspends between
/// polls, so it never holds one of Swift's cooperative threads.
func eventually(seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  while ContinuousClock.now < deadline {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(1))
  }
  return condition()
}

func threadCount() -> Int { Int(vt_thread_count()) }
func fdCount() -> Int { Int(vt_fd_count()) }

/// In an exit-test child: print and exit 1 unless `condition` holds. The parent's expectation
/// shows only the exit code (and a failed `#expect(processExitsWith:)` returns no result to read
/// the child's stderr from), so the line is also appended to the file `VT_FAILURE_LOG` names:
/// `make test` sets it and prints the file when the run fails.
func require(
  _ condition: Bool, _ message: @autoclosure () -> String, fileID: String = #fileID, line: Int = #line
) {
  if !condition {
    let text = "FAILED (\(fileID):\(line), exit-test child \(getpid())): \(message())\n"
    FileHandle.standardError.write(Data(text.utf8))
    if let path = getenv("VT_FAILURE_LOG") {
      let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
      if fd >= 0 {
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
      }
    }
    exit(1)
  }
}

/// Warms Swift's global cooperative pool so its threads exist before a baseline is taken.
func warmGlobalPool() async {
  await withTaskGroup(of: Void.self) { g in
    for _ in 0..<8 { g.addTask { usleep(2000) } }
  }
}

func makeManager(
  workers: Int? = 2, maxBlocking: Int? = nil, keepAlive: Duration = .seconds(10), prefix: String = "vt"
) throws(WasiThreadError) -> ThreadPoolTaskManager {
  var c = ThreadPoolTaskManager.Configuration()
  c.workerThreads = workers
  c.maxBlockingThreads = maxBlocking
  c.blockingKeepAlive = keepAlive
  c.threadNamePrefix = prefix
  return try ThreadPoolTaskManager(configuration: c)
}

/// A shareable atomic counter (closures capture the reference).
final class Counter: Sendable {
  private let value = Atomic<Int>(0)
  init() {}
  func add(_ n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
  var count: Int { value.load(ordering: .relaxed) }
}

/// (thread id, name) of this process's threads whose name starts with `prefix` (one walk of
/// /proc/self/task/*/comm).
private func threads(named prefix: String) -> [(tid: String, name: String)] {
  let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
  return tasks.compactMap { tid in
    let comm = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? ""
    return comm.hasPrefix(prefix) ? (tid, comm.trimmingCharacters(in: .newlines)) : nil
  }
}

/// Thread ids of this process whose name starts with `prefix`.
func threadIDs(named prefix: String) -> [String] { threads(named: prefix).map(\.tid) }

/// Threads of this process whose name starts with `prefix`.
func threadsNamed(_ prefix: String) -> Int { threads(named: prefix).count }

/// The names of this process's threads that start with `prefix`, sorted.
func threadNames(startingWith prefix: String) -> [String] { threads(named: prefix).map(\.name).sorted() }

/// CPU time (user + system, in clock ticks of 10 ms) used so far by the threads of this process
/// whose name starts with `prefix` (fields 14 and 15 of /proc/self/task/*/stat).
func cpuTicksOfThreads(named prefix: String) -> Int {
  var total = 0
  for tid in threadIDs(named: prefix) {
    guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { continue }
    // After "pid (comm) ": field 3 (state) is the first; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    if fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) {
      total += user + system
    }
  }
  return total
}

/// What each open fd is (readlink of /proc/self/fd/N), for failure messages.
func fdTargets() -> [String] {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
  return names.compactMap { n in
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(n)")).map { "\(n)->\($0)" }
  }.sorted()
}

/// `eventually` for exit-test children: polls with usleep. A child runs one test alone, so
/// blocking its thread starves nobody, and it creates none of Dispatch's lazily made timer fds
/// and threads (`Task.sleep` would), which would move the fd and thread baselines. Also for a
/// shared task that must block its worker on purpose while it waits.
func eventuallyInChild(seconds: Double = 60, _ condition: () -> Bool) -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  while ContinuousClock.now < deadline {
    if condition() { return true }
    usleep(1000)
  }
  return condition()
}

/// Counts its own deinits: a closure capturing one shows when the closure was released.
final class ReleaseProbe: Sendable {
  let released: Counter
  init(_ released: Counter) { self.released = released }
  deinit { released.add() }
}

/// 10k scheduled items (through `schedule`: a scheduled task or a callback), each cancelled at
/// a varied point around its deadline (some before, some as it fires, some after): each one runs
/// exactly once or is cancelled, never both and never neither. Shuts `mgr` down.
func expectCancellationRacingExpiry(
  on mgr: ThreadPoolTaskManager,
  schedule: (Duration, @escaping @Sendable () -> Void) throws(WasiThreadError) -> ScheduledTask
) async throws {
  let n = 10_000
  let ran = Locked([Int](repeating: 0, count: n))
  let outcomes = Locked([Bool](repeating: false, count: n))
  for i in 0..<n {
    let handle = try schedule(.microseconds(10 + i % 50)) { ran.withLock { $0[i] += 1 } }
    for _ in 0..<(i % 7 == 0 ? 0 : (i % 200) * 8) { vt_cpu_relax() }
    let cancelled = handle.cancel()
    outcomes.withLock { $0[i] = cancelled }
  }
  await mgr.shutdownGracefully()
  let cancelled = outcomes.withLock { $0 }
  let runs = ran.withLock { $0 }
  var both = 0
  var neither = 0
  for i in 0..<n {
    if runs[i] > 1 || (runs[i] == 1 && cancelled[i]) { both += 1 }
    if runs[i] == 0 && !cancelled[i] { neither += 1 }
  }
  #expect(both == 0)
  #expect(neither == 0)
  #expect(cancelled.contains(true) && runs.contains(1))  // both outcomes were exercised
  #expect(mgr.metrics().pendingTimers == 0)
}
