/// The task-manager contract (DESIGN.md section 3), in the spirit of wasmer-wasix's
/// `VirtualTaskManager`: one place that runs short async work, blocking work and timers.
///
/// Every method may be called from any thread, inside or outside a Swift Task; nothing relies on
/// an ambient thread-local runtime.
public protocol VirtualTaskManager: Sendable {
  /// Suspends the calling task for at least `duration` on the monotonic clock.
  /// `duration <= 0` yields exactly once; cancellation returns promptly.
  func sleepNow(_ duration: Duration) async
  /// Runs `task` as an async task on the shared (non-blocking) pool. The task must not block.
  func taskShared(_ task: @escaping @Sendable () async -> Void) throws(WasiThreadError)
  /// Runs `task` on a thread that may block for as long as it likes.
  func taskDedicated(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError)
  /// The number of CPUs this process may use (never the pool's capacity).
  func threadParallelism() throws(WasiThreadError) -> Int
}

extension VirtualTaskManager {
  /// Runs `operation` on the shared pool and blocks the calling thread until it returns.
  ///
  /// Called from a thread of a ``ThreadPoolTaskManager`` worker pool this would block a worker the
  /// operation may need, so it is detected and throws ``WasiThreadError/unsupported`` at once,
  /// never parking the worker on itself: `await` the operation there instead.
  public func spawnAndBlockOn<T: Sendable>(
    _ operation: @escaping @Sendable () async -> T
  ) throws(WasiThreadError) -> T {
    if let custom = self as? any _BlockingBridge {
      return try custom._spawnAndBlockOn(operation)
    }
    let box = BlockingResult<T>()
    try taskShared {
      let value = await operation()
      box.fulfil(value)
    }
    return box.wait()
  }

  /// Runs `work` on the blocking pool and awaits its result without blocking the caller's thread.
  public func spawnAwait<T: Sendable>(
    _ work: @escaping @Sendable () -> T
  ) async throws(WasiThreadError) -> T {
    let result: Result<T, WasiThreadError> = await withUnsafeContinuation { continuation in
      do throws(WasiThreadError) {
        try self.taskDedicated { continuation.resume(returning: .success(work())) }
      } catch {
        // Rejected: the closure was released without running; report why.
        continuation.resume(returning: .failure(error))
      }
    }
    return try result.get()
  }
}

/// Lets a manager customise `spawnAndBlockOn` (to detect being called on its own worker).
public protocol _BlockingBridge {
  func _spawnAndBlockOn<T: Sendable>(
    _ operation: @escaping @Sendable () async -> T
  ) throws(WasiThreadError) -> T
}
