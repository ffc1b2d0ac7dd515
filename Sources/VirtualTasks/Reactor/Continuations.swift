/// The continuation types the reactor stores. Debug builds use checked continuations, so a double
/// resume traps in tests; release builds use unsafe ones (no allocation per wait).

#if DEBUG
  typealias SleepContinuation = CheckedContinuation<Void, Never>
  typealias ReadinessContinuation = CheckedContinuation<Void, any Error>

  @inline(__always)
  func withSleepContinuation(_ body: (SleepContinuation) -> Void) async {
    await withCheckedContinuation(body)
  }

  @inline(__always)
  func withReadinessContinuation(_ body: (ReadinessContinuation) -> Void) async throws {
    try await withCheckedThrowingContinuation(body)
  }
#else
  typealias SleepContinuation = UnsafeContinuation<Void, Never>
  typealias ReadinessContinuation = UnsafeContinuation<Void, any Error>

  @inline(__always)
  func withSleepContinuation(_ body: (SleepContinuation) -> Void) async {
    await withUnsafeContinuation(body)
  }

  @inline(__always)
  func withReadinessContinuation(_ body: (ReadinessContinuation) -> Void) async throws {
    try await withUnsafeThrowingContinuation(body)
  }
#endif
