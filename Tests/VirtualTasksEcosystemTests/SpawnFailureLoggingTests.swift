/// A refused thread is logged, with the pool, the errno and what became of the work. Threads are
/// refused through CShims' fault-injection hook, process-wide, so each test runs in a child
/// process (an exit test) where nothing else creates threads meanwhile.
import CShims
import Foundation
import InMemoryLogging
import Logging
import Testing
import VirtualTasks

/// Ends the child process with a message when `condition` is false.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
  if condition { return }
  FileHandle.standardError.write(Data("check failed: \(message())\n".utf8))
  exit(1)
}

/// A manager with one worker whose logger writes into `handler` at debug level.
func loggingManager(_ handler: InMemoryLogHandler, prefix: String) throws -> ThreadPoolTaskManager {
  var configuration = ThreadPoolTaskManager.Configuration()
  configuration.workerThreads = 1
  configuration.maxBlockingThreads = 8
  configuration.threadNamePrefix = prefix
  configuration.logger = Logger(label: "virtual-tasks", factory: { _ in handler })
  configuration.logger.logLevel = .debug
  return try ThreadPoolTaskManager(configuration: configuration)
}

@Suite struct SpawnFailureLoggingTests {
  @Test func refusedBlockingThread_withNoLiveThread_logsAtDebug_outcomeThrown() async {
    await #expect(processExitsWith: .success) {
      let handler = InMemoryLogHandler()
      guard let manager = try? loggingManager(handler, prefix: "logfail") else {
        return check(false, "no manager")
      }
      vt_testing_fail_all_thread_creates(EAGAIN)
      let refused = (try? manager.taskDedicated {}) == nil
      vt_testing_fail_all_thread_creates(0)
      check(refused, "the submit was accepted without a thread")
      let lines = handler.entries.filter { $0.message.description == "thread spawn failed" }
      check(lines.count == 1, "\(handler.entries)")
      let line = lines[0]
      check(line.level == .debug, "level \(line.level): the submitter heard of it by the throw")
      check(line.metadata["pool"] == "blocking", "\(line.metadata)")
      check(line.metadata["outcome"] == "thrown", "\(line.metadata)")
      check(line.metadata["errno"] == "\(EAGAIN)", "\(line.metadata)")
      check(line.metadata["thread"] == "logfail-b0", "\(line.metadata)")
      check(line.metadata["manager"] == "logfail", "\(line.metadata)")
      await manager.shutdownGracefully()
    }
  }

  @Test func refusedBlockingThread_withALiveThread_logsAtInfo_outcomeQueued() async {
    await #expect(processExitsWith: .success) {
      let handler = InMemoryLogHandler()
      guard let manager = try? loggingManager(handler, prefix: "logq") else {
        return check(false, "no manager")
      }
      let release = DispatchSemaphore(value: 0)
      let started = DispatchSemaphore(value: 0)
      check((try? manager.taskDedicated { started.signal(); release.wait() }) != nil, "first submit")
      started.wait()  // a live, busy blocking thread
      vt_testing_fail_all_thread_creates(EAGAIN)
      let accepted = (try? manager.taskDedicated {}) != nil
      vt_testing_fail_all_thread_creates(0)
      check(accepted, "the work should wait for the live thread")
      let lines = handler.entries.filter { $0.message.description == "thread spawn failed" }
      check(lines.count == 1, "\(handler.entries)")
      check(lines[0].level == .info, "level \(lines[0].level): nobody else hears of it")
      check(lines[0].metadata["outcome"] == "queued", "\(lines[0].metadata)")
      check(lines[0].metadata["threads"] == "1", "\(lines[0].metadata)")
      check(lines[0].metadata["queued"] == "1", "\(lines[0].metadata)")
      release.signal()
      await manager.shutdownGracefully()
      check(manager.metrics().completedBlockingJobs == 2, "the queued work ran")
    }
  }
}
