/// The README's service example, compiled and run as it is printed there (only `@main` and
/// `static func main()` differ), so the README cannot drift from the API.
import Foundation
import Testing
import VirtualTasks

@Suite struct ReadmeExampleTests {
  static func readmeMain() async throws {
    let manager = try ThreadPoolTaskManager()  // workers = CPUs this process may use
    // Async work on the worker pool: it may await, it must not block.
    try manager.taskShared {
      for tick in 1...3 {
        await manager.sleepNow(.milliseconds(100))  // a precise timer; no thread blocked
        print("tick \(tick) on \(currentThreadName())")  // vtasks-w0, vtasks-w1, ...
      }
    }
    // Blocking work on the blocking pool: it may block as long as it likes.
    try manager.taskDedicated { Thread.sleep(forTimeInterval: 0.2); print("slow work done") }
    // A blocking call awaited from async code.
    let sum = try await manager.spawnAwait { (1...1_000_000).reduce(0, +) }
    print("sum", sum)
    await manager.shutdownGracefully()  // runs every accepted task, joins every thread
    do { try manager.taskShared {} } catch { print(error) }  // the task manager is shut down
  }

  @Test func readmeServiceExample_runsToTheEnd() async throws {
    try await Self.readmeMain()
  }
}
