/// `ManagerMetricsReporter`: the swift-metrics values equal `metrics()`, checked with
/// `MetricsTestKit` (a factory passed in, so nothing global is bootstrapped).
import MetricsTestKit
import Testing
import VirtualTasks
import VirtualTasksMetrics

@Suite struct MetricsReporterTests {
  func manager(workers: Int = 2) throws -> ThreadPoolTaskManager {
    var configuration = ThreadPoolTaskManager.Configuration()
    configuration.workerThreads = workers
    configuration.threadNamePrefix = "vtmet"
    return try ThreadPoolTaskManager(configuration: configuration)
  }

  /// The last value of the gauge `label`.
  func gauge(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)] = []) throws
    -> Double?
  {
    try metrics.expectGauge(label, dimensions).lastValue
  }

  @Test func sample_reportsGaugesAndCounters_equalToTheSnapshot() async throws {
    let metrics = TestMetrics()
    let manager = try manager()
    let reporter = ManagerMetricsReporter(
      manager: manager,
      configuration: .init(labelPrefix: "app_pool", dimensions: [("manager", "test")], factory: metrics))
    let dims = [("manager", "test")]

    // One blocking thread held busy, five quick closures and one shared task.
    let release = Latch()
    let events = Events<String>()
    try manager.taskDedicated {
      events.record("held")
      release.wait()
    }
    for _ in 0..<5 { try manager.taskDedicated {} }
    try manager.taskShared { events.record("shared") }
    _ = await events.next(2)

    let snapshot = reporter.sample()
    #expect(try gauge(metrics, "app_pool_worker_threads", dims) == 2)
    #expect(try gauge(metrics, "app_pool_blocking_threads", dims) == Double(snapshot.blockingThreads))
    #expect(
      try gauge(metrics, "app_pool_blocking_threads_busy", dims) == Double(snapshot.blockingThreadsBusy))
    #expect(snapshot.blockingThreadsBusy >= 1)
    for field in ["blocking_threads_idle", "queued_shared_jobs", "queued_blocking_jobs",
                  "live_shared_tasks", "pending_timers", "registered_fds"] {
      #expect(try gauge(metrics, "app_pool_\(field)", dims) != nil, "\(field)")
    }
    #expect(try gauge(metrics, "app_pool_pending_timers", dims) == Double(snapshot.pendingTimers))
    #expect(
      try metrics.expectCounter("app_pool_completed_blocking_jobs", dims).totalValue
        == Int64(snapshot.completedBlockingJobs))
    #expect(try metrics.expectCounter("app_pool_spawn_failures", dims).totalValue == 0)

    // Counters grow by the change between samples: after shutdown every closure ran.
    release.open()
    await manager.shutdownGracefully()
    let last = reporter.sample()
    #expect(last.completedBlockingJobs == 6)
    #expect(last.completedSharedTasks == 1)
    #expect(try metrics.expectCounter("app_pool_completed_blocking_jobs", dims).totalValue == 6)
    #expect(try metrics.expectCounter("app_pool_completed_shared_tasks", dims).totalValue == 1)
    #expect(try gauge(metrics, "app_pool_blocking_threads", dims) == 0)
    #expect(try gauge(metrics, "app_pool_live_shared_tasks", dims) == 0)
  }

  @Test func pendingSleeps_showAsTheTimerGauge() async throws {
    let metrics = TestMetrics()
    let manager = try manager()
    let reporter = ManagerMetricsReporter(manager: manager, configuration: .init(factory: metrics))
    let sleeper = Task { await manager.sleepNow(.seconds(3600)) }
    // Wait until the reactor holds the timer (an event, polled through the snapshot).
    while manager.metrics().pendingTimers == 0 { await Task.yield() }
    reporter.sample()
    #expect(try gauge(metrics, "vtasks_pending_timers") == 1)
    sleeper.cancel()
    await sleeper.value
    await manager.shutdownGracefully()
    reporter.sample()
    #expect(try gauge(metrics, "vtasks_pending_timers") == 0)
  }

  @Test func run_samplesEveryInterval_untilCancelled() async throws {
    let metrics = TestMetrics()
    let manager = try manager()
    let reporter = ManagerMetricsReporter(
      manager: manager, configuration: .init(interval: .milliseconds(10), factory: metrics))
    let running = Task { await reporter.run() }
    // Three samples at least: the gauge has recorded three values.
    while try metrics.expectGauge("vtasks_worker_threads").values.count < 3 { await Task.yield() }
    running.cancel()
    await running.value
    #expect(try metrics.expectGauge("vtasks_worker_threads").values.allSatisfy { $0 == 2 })
    await manager.shutdownGracefully()
  }

  @Test func nothingIsReported_untilAReporterIsMade() async throws {
    let metrics = TestMetrics()
    let manager = try manager()
    try manager.taskDedicated {}
    await manager.shutdownGracefully()
    #expect(metrics.recorders.isEmpty && metrics.counters.isEmpty)
  }
}
