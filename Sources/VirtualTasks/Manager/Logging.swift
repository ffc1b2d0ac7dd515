/// What the library logs through `Configuration.logger` (swift-log), one helper per event, so every
/// site writes the same message and metadata keys.
///
/// Only rare events log, never a hot path: a refused thread, the start and end of shutdown, a
/// submit rejected after shutdown. Levels follow swift-log's advice for libraries: `info` for a
/// failure nobody hears about otherwise (a refused blocking thread whose work stays queued, no
/// thread for the teardown), `debug` for everything else (the caller also gets a typed error, or
/// it is an ordinary lifecycle step). Callers log after releasing their locks: a handler may take
/// its own locks or call back into the manager.
///
/// Metadata keys: `manager` (the thread name prefix, on every line), `pool` (`workers`,
/// `blocking`, `reactor`, `teardown`), `thread` (the refused thread's name), `errno`, `threads`
/// (live threads of the pool), `queued` (work waiting in the pool), `outcome` (what became of
/// the work), and on shutdown lines the ``ThreadPoolTaskManager/Metrics`` fields in snake case.
import Logging

extension Logger {
  /// The default of ``ThreadPoolTaskManager/Configuration/logger``: label `virtual-tasks`,
  /// discarding every message (a library logs only where its user asked it to).
  static var virtualTasksDefault: Logger {
    Logger(label: "virtual-tasks", factory: { _ in SwiftLogNoOpLogHandler() })
  }

  /// The OS refused a thread (`pthread_create` failed).
  /// - Parameter outcome: what became of the work: `thrown` (the caller got `.spawnFailed`:
  ///   `debug`), `queued` (a live thread will run it) or `global-executor` (the teardown runs
  ///   there instead): `info`, since nobody else hears of those.
  func threadSpawnFailed(
    pool: String, thread: String, errno: Int32, threads: Int? = nil, queued: Int? = nil,
    outcome: String
  ) {
    var metadata: Metadata = [
      "pool": "\(pool)", "thread": "\(thread)", "errno": "\(errno)", "outcome": "\(outcome)",
    ]
    if let threads { metadata["threads"] = "\(threads)" }
    if let queued { metadata["queued"] = "\(queued)" }
    log(level: outcome == "thrown" ? .debug : .info, "thread spawn failed", metadata: metadata)
  }

  /// `init` failed at `pool` (`reactor`: an fd or its thread; `workers`: a worker thread) and
  /// threw `error`, having undone everything it started.
  func managerStartFailed(pool: String, error: WasiThreadError) {
    if case .spawnFailed(let errno) = error {
      debug(
        "thread spawn failed",
        metadata: ["pool": "\(pool)", "errno": "\(errno)", "outcome": "thrown"])
    } else {
      debug("manager start failed", metadata: ["pool": "\(pool)", "error": "\(error)"])
    }
  }

  /// A submit was refused with `reason` (`.shutDown`); the closure was released unrun.
  func submitRejected(pool: String, reason: WasiThreadError) {
    debug("submit rejected", metadata: ["pool": "\(pool)", "reason": "\(reason)"])
  }

  /// Shutdown began: admission is closed; what is still to drain.
  func shutdownStarted(_ metrics: ThreadPoolTaskManager.Metrics) {
    debug("shutdown started", metadata: metrics.logMetadata)
  }

  /// Shutdown ended: every accepted task ran, every thread is joined, every fd closed.
  func shutdownFinished(_ metrics: ThreadPoolTaskManager.Metrics, after elapsed: Duration) {
    var metadata = metrics.logMetadata
    metadata["duration_ms"] = "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)"
    debug("shutdown finished", metadata: metadata)
  }
}

extension ThreadPoolTaskManager.Metrics {
  /// The snapshot as log metadata, keys in snake case.
  var logMetadata: Logger.Metadata {
    [
      "worker_threads": "\(workerThreads)", "blocking_threads": "\(blockingThreads)",
      "blocking_threads_busy": "\(blockingThreadsBusy)", "queued_shared_jobs": "\(queuedSharedJobs)",
      "queued_blocking_jobs": "\(queuedBlockingJobs)", "live_shared_tasks": "\(liveSharedTasks)",
      "completed_shared_tasks": "\(completedSharedTasks)",
      "completed_blocking_jobs": "\(completedBlockingJobs)", "spawn_failures": "\(spawnFailures)",
      "pending_timers": "\(pendingTimers)", "registered_fds": "\(registeredFDs)",
    ]
  }
}
