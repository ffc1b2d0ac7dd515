/// Hand-offs between the thread that asks for wasm work and the thread that does it.
///
/// `Monitor` is a pthread mutex with one condition variable; `OneShot` is a value delivered once
/// and awaited either by blocking an OS thread (guest threads, host threads) or by suspending a
/// Swift task (async callers, so the cooperative pool is never blocked). Any thread may call them.
#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A mutex and its condition variable; the storage is heap-allocated and never moves.
final class Monitor: @unchecked Sendable {  // every access goes through the pthread mutex
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let condition: UnsafeMutablePointer<pthread_cond_t>

  init() {
    mutex = .allocate(capacity: 1)
    condition = .allocate(capacity: 1)
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
  }

  deinit {
    pthread_cond_destroy(condition)
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
    condition.deallocate()
  }

  func withLock<R>(_ body: () throws -> R) rethrows -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  /// Waits with the lock held until `done()` is true. Spurious wake-ups are absorbed here.
  func wait(until done: () -> Bool) {
    while !done() { pthread_cond_wait(condition, mutex) }
  }

  /// Wakes every waiter; call with the lock held.
  func broadcast() { pthread_cond_broadcast(condition) }
}

/// A value set exactly once (the first `fulfil` wins) and read by any number of waiters.
final class OneShot<Value: Sendable>: @unchecked Sendable {  // `value`, `waiters` guarded by `monitor`
  private let monitor = Monitor()
  private var value: Value?
  private var waiters: [CheckedContinuation<Value, Never>] = []

  init() {}

  /// Delivers `newValue` unless a value was already delivered. Returns whether it was delivered.
  @discardableResult
  func fulfil(_ newValue: Value) -> Bool {
    let resumed: [CheckedContinuation<Value, Never>]? = monitor.withLock {
      guard value == nil else { return nil }
      value = newValue
      monitor.broadcast()
      defer { waiters = [] }
      return waiters
    }
    guard let resumed else { return false }
    for waiter in resumed { waiter.resume(returning: newValue) }
    return true
  }

  /// The value, if it was delivered.
  var current: Value? { monitor.withLock { value } }

  /// Blocks the calling OS thread until the value is delivered.
  func wait() -> Value {
    monitor.withLock {
      monitor.wait { value != nil }
      return value!
    }
  }

  /// Suspends the calling task (never its thread) until the value is delivered.
  func value() async -> Value {
    await withCheckedContinuation { continuation in
      let ready: Value? = monitor.withLock {
        if let value { return value }
        waiters.append(continuation)
        return nil
      }
      if let ready { continuation.resume(returning: ready) }
    }
  }
}
