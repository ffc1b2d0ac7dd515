/// Measuring tools shared by every workload: the clock, completion latches, sample buffers that
/// callbacks on any thread write by index, percentiles, and the process probes (RSS, CPU).
import CBenchSupport
import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// CLOCK_MONOTONIC nanoseconds; every peer's time and lateness is read from this one clock.
@inline(__always) func nowNanos() -> Int64 { cb_now_ns() }

/// Counts down from `count`; the thread that reaches zero wakes the waiter. Capturing only this
/// object keeps a closure's context a single reference (no context allocation per submit).
final class Latch: Sendable {
  private let remaining: Atomic<Int>
  private let semaphore = DispatchSemaphore(value: 0)

  init(_ count: Int) { remaining = Atomic(count) }

  @inline(__always) func done() {
    if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { semaphore.signal() }
  }

  func wait() { semaphore.wait() }

  /// Waits at most `seconds`; a peer that never finishes ends the run with a message, not a hang.
  func wait(orFail what: @autoclosure () -> String, seconds: Int = 120) {
    if semaphore.wait(timeout: .now() + .seconds(seconds)) == .timedOut {
      fatalError("timed out after \(seconds) s waiting for \(what()); \(Diagnostics.state())")
    }
  }
}

/// What to print when a peer stalls (set once at start-up, before any workload runs).
enum Diagnostics {
  nonisolated(unsafe) static var describe: (@Sendable () -> String)?
  static func state() -> String { describe?() ?? "" }
}

/// A counter callbacks bump (W7, W8: how many sleeps have started).
final class Counter: Sendable {
  private let value = Atomic<Int>(0)
  @inline(__always) func increment() { value.add(1, ordering: .relaxed) }
  var current: Int { value.load(ordering: .relaxed) }
}

/// `count` Int64 slots, each written once by exactly one callback (distinct indices, so no lock);
/// read only after the latch that orders those writes has opened.
final class Samples: @unchecked Sendable {  // disjoint writes, read after a happens-before edge
  let count: Int
  let base: UnsafeMutablePointer<Int64>

  init(_ count: Int) {
    self.count = count
    base = .allocate(capacity: max(1, count))
    base.initialize(repeating: 0, count: max(1, count))
  }

  deinit { base.deallocate() }

  @inline(__always) subscript(i: Int) -> Int64 {
    get { base[i] }
    set { base[i] = newValue }
  }

  func sorted() -> [Int64] { Array(UnsafeBufferPointer(start: base, count: count)).sorted() }
}

/// Nearest-rank percentile of an ascending array (`p` in 0...100).
func percentile(_ sorted: [Int64], _ p: Double) -> Double {
  guard !sorted.isEmpty else { return .nan }
  let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
  return Double(sorted[min(max(rank, 0), sorted.count - 1)])
}

func median(_ values: [Double]) -> Double {
  let s = values.filter { !$0.isNaN }.sorted()
  guard !s.isEmpty else { return .nan }
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

enum Probe {
  static var rss: Int64 { cb_rss_bytes() }
  static var cpuNanos: Int64 { cb_process_cpu_ns() }

  /// Trims the heap, resets the peak, and returns the RSS a peak is then measured against.
  static func startPeakWindow() -> Int64 {
    cb_malloc_trim()
    _ = cb_reset_peak_rss()
    return cb_rss_bytes()
  }

  /// Growth of the peak RSS over `baseline`, in MB.
  static func peakGrowthMB(since baseline: Int64) -> Double {
    Double(max(0, cb_peak_rss_bytes() - baseline)) / 1_048_576
  }

  /// RSS after trimming the heap, in bytes.
  static func trimmedRSS() -> Int64 {
    cb_malloc_trim()
    return cb_rss_bytes()
  }
}

/// Blocks the calling (non-pool) thread.
func sleepThread(nanoseconds: Int64) {
  var ts = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
  var remaining = timespec()
  while nanosleep(&ts, &remaining) != 0 { ts = remaining }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes; false on timeout.
@discardableResult
func waitUntil(timeoutNanos: Int64 = 60_000_000_000, _ condition: () -> Bool) -> Bool {
  let end = nowNanos() + timeoutNanos
  while !condition() {
    if nowNanos() > end { return false }
    sleepThread(nanoseconds: 1_000_000)
  }
  return true
}

/// Writes to fd 2 unbuffered (the C `stderr` global is not concurrency-safe in Swift 6).
func writeStderr(_ text: String) {
  var text = text
  text.withUTF8 { bytes in
    var offset = 0
    while offset < bytes.count {
      let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
      if n <= 0 { break }
      offset += n
    }
  }
}
