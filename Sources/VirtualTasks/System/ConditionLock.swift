/// A pthread mutex with one condition variable (on CLOCK_MONOTONIC for timed waits).
///
/// Used where a thread must sleep until a predicate over shared state changes (the blocking pool,
/// blocking bridges). Any thread may call it. The storage is heap-allocated and never moves.
#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif
import CShims

final class ConditionLock: @unchecked Sendable {  // all access goes through the pthread mutex
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let cond: UnsafeMutablePointer<pthread_cond_t>

  init() {
    mutex = .allocate(capacity: 1)
    cond = .allocate(capacity: 1)
    _ = vt_mutex_init_adaptive(mutex)  // spins briefly before sleeping in the kernel
    var attr = pthread_condattr_t()
    pthread_condattr_init(&attr)
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
    pthread_cond_init(cond, &attr)
    pthread_condattr_destroy(&attr)
  }

  deinit {
    pthread_cond_destroy(cond)
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
    cond.deallocate()
  }

  func lock() { pthread_mutex_lock(mutex) }
  func unlock() { pthread_mutex_unlock(mutex) }

  @inline(__always)
  func withLock<R>(_ body: () throws -> R) rethrows -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  /// Waits (lock held) until signalled. Spurious wake-ups happen: re-check the predicate.
  func wait() { pthread_cond_wait(cond, mutex) }


  func signal() { pthread_cond_signal(cond) }
  func broadcast() { pthread_cond_broadcast(cond) }
}

/// A one-shot value handed from one thread to another thread that blocks for it.
final class BlockingResult<T: Sendable>: @unchecked Sendable {  // `value` is guarded by `lock`
  private let lock = ConditionLock()
  private var value: T?

  init() {}

  func fulfil(_ v: T) {
    lock.withLock {
      value = v
      lock.broadcast()
    }
  }

  func wait() -> T {
    lock.lock()
    defer { lock.unlock() }
    while value == nil { lock.wait() }
    return value!
  }
}
