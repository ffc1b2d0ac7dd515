/// `ThreadPoolTaskManager` as a `Service`: `run()` returns only after graceful shutdown was
/// triggered and `shutdownGracefully()` completed. The order of events is recorded and checked.
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import VirtualTasks
import VirtualTasksServiceLifecycle

@Suite struct ServiceLifecycleTests {
  func manager() throws -> ThreadPoolTaskManager {
    var configuration = ThreadPoolTaskManager.Configuration()
    configuration.workerThreads = 2
    configuration.threadNamePrefix = "vtsvc"
    return try ThreadPoolTaskManager(configuration: configuration)
  }

  @Test func run_returnsAfterTheTrigger_andAfterShutdownCompleted() async throws {
    let manager = try manager()
    let events = Events<String>()
    let release = Latch()
    try await testGracefulShutdown { trigger in
      let running = Task {
        try await manager.run()
        events.record("run returned")
      }
      // Accepted before the trigger; it blocks until released, so shutdown has to wait for it.
      try manager.taskDedicated {
        events.record("task started")
        release.wait()
        events.record("task finished")
      }
      #expect(await events.next(1) == ["task started"])
      trigger.triggerGracefulShutdown()
      // Admission closes at once; run() is still waiting for the accepted task.
      while (try? manager.taskShared {}) != nil { await Task.yield() }
      events.record("admission closed")
      release.open()
      try await running.value
      #expect(await events.next(3) == ["admission closed", "task finished", "run returned"])
    }
    #expect(manager.metrics().blockingThreads == 0, "every thread joined when run() returned")
    #expect(manager.metrics().completedBlockingJobs == 1)
  }

  /// A service that uses the manager: it submits work while running and while shutting down.
  struct Worker: Service {
    let manager: ThreadPoolTaskManager
    let events: Events<String>

    func run() async throws {
      try manager.taskDedicated { events.record("work ran") }
      events.record("worker started")
      try? await gracefulShutdown()
      // The manager, started before this service, is still accepting: it stops after us.
      let recorded = Latch()
      let accepted =
        (try? manager.taskDedicated {
          recorded.wait()
          events.record("last work ran")
        }) != nil
      events.record(accepted ? "worker stopping, last work accepted" : "worker stopping, rejected")
      recorded.open()
    }
  }

  /// Records when the manager's `run()` returned, and checks it shut down by then.
  struct ManagerWatcher: Service {
    let manager: ThreadPoolTaskManager
    let events: Events<String>

    func run() async throws {
      try await manager.run()
      let stopped = (try? manager.taskDedicated {}) == nil && manager.metrics().blockingThreads == 0
      events.record(stopped ? "manager stopped" : "manager still running")
    }
  }

  @Test func inAServiceGroup_theManagerStopsLast_afterItsUsers() async throws {
    let manager = try manager()
    let events = Events<String>()
    let group = ServiceGroup(
      configuration: .init(
        services: [
          .init(service: ManagerWatcher(manager: manager, events: events)),
          .init(service: Worker(manager: manager, events: events)),
        ],
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
    let running = Task { try await group.run() }
    // Both services started (the work may run before or after "worker started").
    #expect(Set(await events.next(2)) == ["work ran", "worker started"])
    await group.triggerGracefulShutdown()
    try await running.value
    let rest = await events.next(3)
    // Reverse order: the worker stops first while the manager still accepts, then the manager
    // drains (the last work runs) and its run() returns with every thread joined.
    #expect(rest == ["worker stopping, last work accepted", "last work ran", "manager stopped"])
  }
}
