/// Small helpers of the ecosystem tests.
import Dispatch

/// A one-way gate for blocking-pool closures: `wait()` blocks the calling thread until `open()`.
/// Only for threads that may block (never a worker, never the test's task).
final class Latch: Sendable {
  private let semaphore = DispatchSemaphore(value: 0)  // DispatchSemaphore is thread-safe

  func open() { semaphore.signal() }

  func wait() {
    semaphore.wait()
    semaphore.signal()  // stays open for later waiters
  }
}

/// Events in the order they happened, awaited by the test in that order.
struct Events<Element: Sendable>: Sendable {
  let stream: AsyncStream<Element>
  let continuation: AsyncStream<Element>.Continuation

  init() { (stream, continuation) = AsyncStream<Element>.makeStream() }

  func record(_ event: Element) { continuation.yield(event) }

  /// The next `count` events.
  func next(_ count: Int) async -> [Element] {
    var seen: [Element] = []
    if count == 0 { return seen }
    for await event in stream {
      seen.append(event)
      if seen.count == count { break }
    }
    return seen
  }
}
