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
}
