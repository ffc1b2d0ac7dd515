/// `Configuration.logger`: what the manager logs, checked with swift-log's `InMemoryLogHandler`.
import InMemoryLogging
import Logging
import Testing
import VirtualTasks

@Suite struct LoggingTests {
  /// A manager whose logger writes into `handler` at `level`.
  func manager(
    _ handler: InMemoryLogHandler, level: Logger.Level = .debug, prefix: String = "vtlog"
  ) throws -> ThreadPoolTaskManager {
    var configuration = ThreadPoolTaskManager.Configuration()
    configuration.workerThreads = 2
    configuration.threadNamePrefix = prefix
    configuration.logger = Logger(label: "virtual-tasks", factory: { _ in handler })
    configuration.logger.logLevel = level
    return try ThreadPoolTaskManager(configuration: configuration)
  }

  @Test func defaultLogger_isLabelledVirtualTasks_andDiscardsEverything() {
    let logger = ThreadPoolTaskManager.Configuration().logger
    #expect(logger.label == "virtual-tasks")
    #expect(logger.logLevel == .critical, "the no-op handler reports .critical")
  }

  @Test func shutdown_logsStartAndEnd_withCountsAndManager() async throws {
    let handler = InMemoryLogHandler()
    let manager = try manager(handler)
    try manager.taskDedicated {}
    await manager.shutdownGracefully()

    let entries = handler.entries
    #expect(entries.map(\.message.description) == ["shutdown started", "shutdown finished"])
    let started = try #require(entries.first)
    let finished = try #require(entries.last)
    #expect(started.level == .debug)
    #expect(started.metadata["manager"] == "vtlog")
    #expect(started.metadata["worker_threads"] == "2")
    #expect(finished.metadata["completed_blocking_jobs"] == "1")
    #expect(finished.metadata["blocking_threads"] == "0", "every thread joined before the line")
    #expect(finished.metadata["duration_ms"] != nil)
  }

  @Test func submitsAfterShutdown_logRejections_atDebug() async throws {
    let handler = InMemoryLogHandler()
    let manager = try manager(handler)
    await manager.shutdownGracefully()
    handler.clear()

    #expect(throws: WasiThreadError.shutDown) { try manager.taskShared {} }
    #expect(throws: WasiThreadError.shutDown) { try manager.taskDedicated {} }

    let rejected = handler.entries.filter { $0.message.description == "submit rejected" }
    #expect(rejected.map(\.metadata["pool"]) == ["workers", "blocking"])
    #expect(rejected.allSatisfy { $0.level == .debug && $0.metadata["reason"] == "\(WasiThreadError.shutDown)" })
  }

  @Test func atInfoLevel_anOrdinaryLifeLogsNothing() async throws {
    let handler = InMemoryLogHandler()
    let manager = try manager(handler, level: .info)
    try manager.taskShared {}
    try manager.taskDedicated {}
    await manager.sleepNow(.milliseconds(1))
    await manager.shutdownGracefully()
    #expect(throws: WasiThreadError.shutDown) { try manager.taskShared {} }
    #expect(handler.entries.isEmpty, "\(handler.entries)")
  }
}
