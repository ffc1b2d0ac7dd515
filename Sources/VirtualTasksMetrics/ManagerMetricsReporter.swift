/// `ManagerMetricsReporter`: feeds a manager's `metrics()` snapshot into swift-metrics.
///
/// Nothing is reported unless one is made: create a reporter and either `await run()` it (it
/// samples every `interval` until its task is cancelled) or call `sample()` yourself. Levels
/// (threads, queues, timers, fds) become gauges; running totals (completed work, spawn failures)
/// become counters, incremented by what changed since the previous sample. Labels are
/// `<prefix>_<name>` in snake case, e.g. `vtasks_blocking_threads_busy`.
///
/// Threads: `sample()` and `run()` may be called from any thread or task; samples are serialised
/// by a lock, so two concurrent samples never count a delta twice.
import CoreMetrics
import Synchronization
import VirtualTasks

public final class ManagerMetricsReporter: Sendable {
  public struct Configuration: Sendable {
    /// The start of every label, joined with `_` (default `vtasks`).
    public var labelPrefix: String
    /// Dimensions added to every metric (e.g. `[("manager", "wasm")]` for a second manager).
    public var dimensions: [(String, String)]
    /// Time between two samples of ``ManagerMetricsReporter/run()`` (default 10 s).
    public var interval: Duration
    /// Where the metrics go; nil: `MetricsSystem.factory` (the process's bootstrapped backend).
    public var factory: (any MetricsFactory)?

    public init(
      labelPrefix: String = "vtasks", dimensions: [(String, String)] = [],
      interval: Duration = .seconds(10), factory: (any MetricsFactory)? = nil
    ) {
      self.labelPrefix = labelPrefix
      self.dimensions = dimensions
      self.interval = interval
      self.factory = factory
    }
  }

  /// The gauges, by metric name (without the prefix), and how each reads a snapshot.
  static let gaugeFields: [(name: String, value: @Sendable (ThreadPoolTaskManager.Metrics) -> Int)] = [
    ("worker_threads", { $0.workerThreads }),
    ("blocking_threads", { $0.blockingThreads }),
    ("blocking_threads_busy", { $0.blockingThreadsBusy }),
    ("blocking_threads_idle", { $0.blockingThreadsIdle }),
    ("queued_shared_jobs", { $0.queuedSharedJobs }),
    ("queued_blocking_jobs", { $0.queuedBlockingJobs }),
    ("live_shared_tasks", { $0.liveSharedTasks }),
    ("pending_timers", { $0.pendingTimers }),
    ("registered_fds", { $0.registeredFDs }),
  ]

  /// The counters: running totals of the snapshot, reported as increments.
  static let counterFields: [(name: String, value: @Sendable (ThreadPoolTaskManager.Metrics) -> Int)] = [
    ("completed_shared_tasks", { $0.completedSharedTasks }),
    ("completed_shared_jobs", { $0.completedSharedJobs }),
    ("completed_blocking_jobs", { $0.completedBlockingJobs }),
    ("spawn_failures", { $0.spawnFailures }),
  ]

  private let manager: ThreadPoolTaskManager
  public let configuration: Configuration
  private let gauges: [Gauge]
  private let counters: [Counter]
  /// The counter totals of the previous sample; locking rule: read and written only inside
  /// `withLock`, which also serialises whole samples.
  private let reported: Mutex<[Int]>

  public init(manager: ThreadPoolTaskManager, configuration: Configuration = .init()) {
    self.manager = manager
    self.configuration = configuration
    let factory = configuration.factory ?? MetricsSystem.factory
    gauges = Self.gaugeFields.map {
      Gauge(
        label: configuration.label($0.name), dimensions: configuration.dimensions, factory: factory)
    }
    counters = Self.counterFields.map {
      Counter(
        label: configuration.label($0.name), dimensions: configuration.dimensions, factory: factory)
    }
    reported = Mutex(Array(repeating: 0, count: Self.counterFields.count))
  }

  /// Takes one snapshot and reports it; returns the snapshot.
  @discardableResult
  public func sample() -> ThreadPoolTaskManager.Metrics {
    reported.withLock { previous in
      let snapshot = manager.metrics()
      for (gauge, field) in zip(gauges, Self.gaugeFields) {
        gauge.record(field.value(snapshot))
      }
      for (index, field) in Self.counterFields.enumerated() {
        let total = field.value(snapshot)
        // Totals only grow; a smaller one (never expected) starts a new baseline.
        if total > previous[index] { counters[index].increment(by: total - previous[index]) }
        previous[index] = total
      }
      return snapshot
    }
  }

  /// Samples at once, then every `configuration.interval`, until the calling task is cancelled
  /// (then it returns without a last sample). Keeps sampling after the manager shut down.
  public func run() async {
    while !Task.isCancelled {
      sample()
      do {
        try await Task.sleep(for: configuration.interval)
      } catch {
        return
      }
    }
  }
}

extension ManagerMetricsReporter.Configuration {
  /// The full label of the metric `name`.
  public func label(_ name: String) -> String {
    labelPrefix.isEmpty ? name : "\(labelPrefix)_\(name)"
  }
}
