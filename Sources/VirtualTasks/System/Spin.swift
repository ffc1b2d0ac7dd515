/// The short busy-wait a thread does before it parks, shared by the worker pool and the blocking
/// pool.
///
/// Why spin at all: waking a parked thread costs a futex syscall for the waker and, on a virtual
/// machine whose CPU went idle, tens of microseconds before the thread runs. Measured here (2
/// vCPUs), p50 of a submit-and-wait round trip: through the blocking pool, 43 us when its thread
/// had parked, under 1 us when it was spinning; through the worker pool (W4), 32 to 47 us with a
/// 3 us spin, 14 us with 50 us (200 us gained nothing more; pausing without `sched_yield`, 23 us).
/// A thread that has just finished work is likely to get more soon (a request/response peer, a
/// guest thread spawning the next), so it stays available for `budgetNanos` first. Bounded in
/// time, and done only when a thread runs out of work: an idle process burns nothing.
///
/// Threads: any; no shared state.
import CShims

#if canImport(Glibc)
  import Glibc
#endif

enum Spin {
  /// How long a thread that ran out of work keeps looking before it parks.
  static let budgetNanos: Int64 = 50_000

  /// Calls `found` until it returns true or `budget` nanoseconds pass: pauses at first, then
  /// yields the CPU between checks (on a small machine the thread that will produce the work may
  /// need this very CPU). Returns whether `found` returned true.
  @inline(__always)
  static func until(budget: Int64 = budgetNanos, _ found: () -> Bool) -> Bool {
    for _ in 0..<16 {
      if found() { return true }
      vt_cpu_relax()
    }
    let deadline = vt_clock_ns(Int32(VT_CLOCK_MONOTONIC)) &+ budget
    while true {
      if found() { return true }
      #if canImport(Glibc)
        _ = Glibc.sched_yield()
      #endif
      if vt_clock_ns(Int32(VT_CLOCK_MONOTONIC)) >= deadline { return found() }
    }
  }

  /// Spins until CLOCK_BOOTTIME reaches `target()` (re-read each time: it may move) or `abort()`
  /// returns true, pausing between reads and yielding the CPU every 64th. For waits the caller
  /// has already bounded (the last tens of microseconds before a timer's deadline).
  @inline(__always)
  static func toDeadline(_ target: () -> Int64, abort: () -> Bool) {
    var spins = 0
    while Syscall.continuousNow() < target() {
      if abort() { return }
      spins &+= 1
      #if canImport(Glibc)
        if spins & 63 == 0 { _ = Glibc.sched_yield() } else { vt_cpu_relax() }
      #else
        vt_cpu_relax()
      #endif
    }
  }
}
