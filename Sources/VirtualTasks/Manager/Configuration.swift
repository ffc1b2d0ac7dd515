/// The settings of a ``ThreadPoolTaskManager`` and the snapshot its `metrics()` returns.
import Logging

extension ThreadPoolTaskManager {
  public struct Configuration: Sendable {
    /// Worker threads for async work; nil: `Parallelism.available()`. Values below 1 mean 1.
    public var workerThreads: Int?
    /// The blocking pool's cap; nil: `max(200, 100 * parallelism)`, like the anchor.
    public var maxBlockingThreads: Int?
    /// Idle blocking threads exit after this long (default 10 s).
    public var blockingKeepAlive: Duration
    /// Thread names are "<prefix>-w3", "<prefix>-b17", "<prefix>-reactor" (Linux keeps 15 bytes).
    public var threadNamePrefix: String
    /// Where the manager logs its rare events: refused threads, shutdown start and end, submits
    /// rejected after shutdown (see `Logging.swift` for levels and metadata). Default: label
    /// `virtual-tasks`, discarding everything; pass `Logger(label: "virtual-tasks")` to use the
    /// process's logging backend.
    public var logger: Logger

    public init() {
      workerThreads = nil
      maxBlockingThreads = nil
      blockingKeepAlive = .seconds(10)
      threadNamePrefix = "vtasks"
      logger = .virtualTasksDefault
    }
  }

  /// A value snapshot of a manager's pools, queues and counters. Counters are read one by one
  /// without a global lock, so a snapshot taken under load is approximate but never torn.
  public struct Metrics: Sendable, Equatable, CustomStringConvertible {
    /// Worker threads of the async pool (fixed).
    public var workerThreads: Int
    /// Live blocking-pool threads, busy and idle.
    public var blockingThreads: Int
    public var blockingThreadsBusy: Int
    public var blockingThreadsIdle: Int
    /// Async jobs waiting in the worker pool's queues.
    public var queuedSharedJobs: Int
    /// Closures waiting for a blocking thread.
    public var queuedBlockingJobs: Int
    /// `taskShared` tasks that ran to completion.
    public var completedSharedTasks: Int
    /// Async jobs (task slices) the workers ran.
    public var completedSharedJobs: Int
    /// Blocking closures that ran to completion.
    public var completedBlockingJobs: Int
    /// `taskShared` tasks accepted and not yet finished.
    public var liveSharedTasks: Int
    /// Times the OS refused a blocking thread.
    public var spawnFailures: Int
    /// Sleeps waiting in the reactor.
    public var pendingTimers: Int
    /// Fds with at least one readiness wait registered.
    public var registeredFDs: Int

    public var description: String {
      "workers=\(workerThreads) blocking=\(blockingThreads) (busy \(blockingThreadsBusy), idle \(blockingThreadsIdle))"
        + " queued shared=\(queuedSharedJobs) blocking=\(queuedBlockingJobs)"
        + " completed shared=\(completedSharedTasks) (jobs \(completedSharedJobs)) blocking=\(completedBlockingJobs)"
        + " live shared=\(liveSharedTasks) spawnFailures=\(spawnFailures)"
        + " timers=\(pendingTimers) fds=\(registeredFDs)"
    }
  }
}
