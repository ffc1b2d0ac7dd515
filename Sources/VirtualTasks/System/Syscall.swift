/// Turns the CShims convention (`>= 0` or `-errno`) into typed errors that name the call.
import CShims

enum Syscall {
  /// Returns `result` when it is >= 0, otherwise throws `.systemCallFailed(name:errno:)`.
  @inline(__always)
  static func check(_ name: String, _ result: Int32) throws(WasiThreadError) -> Int32 {
    if result >= 0 { return result }
    throw .systemCallFailed(name: name, errno: -result)
  }

  /// Nanoseconds on the clock Swift's `ContinuousClock` uses on Linux (CLOCK_BOOTTIME), so a
  /// caller measuring with `ContinuousClock` never sees one of our deadlines early.
  @inline(__always)
  static func continuousNow() -> Int64 { vt_clock_ns(Int32(VT_CLOCK_BOOTTIME)) }

  /// A `ContinuousClock` instant and a CLOCK_BOOTTIME reading taken just after it (the same
  /// clock), once per process: instants convert to our nanoseconds through one fixed offset, so
  /// equal instants get equal deadlines (their submission order then decides), and none is early
  /// (the reading is at or after the instant).
  private static let anchor: (instant: ContinuousClock.Instant, nanoseconds: Int64) = (
    ContinuousClock.now, continuousNow()
  )

  /// `instant` as CLOCK_BOOTTIME nanoseconds, never earlier than it (saturating at
  /// `Int64.max`); nil when it is before this process first looked at the clock.
  static func continuousNanoseconds(_ instant: ContinuousClock.Instant) -> Int64? {
    let anchor = Self.anchor
    if instant < anchor.instant { return nil }
    let (sum, overflow) = anchor.nanoseconds.addingReportingOverflow(
      anchor.instant.duration(to: instant).saturatingNanoseconds)
    return overflow ? .max : sum
  }
}
