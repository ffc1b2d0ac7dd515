/// `ThreadPoolTaskManager` as a swift-service-lifecycle `Service`.
///
/// Put the manager first in a `ServiceGroup`: the group starts services in order and shuts them
/// down in reverse, so every service after it may still submit work while it stops, and the
/// manager drains last. Its `run()` does nothing until graceful shutdown is triggered (a signal,
/// `ServiceGroup.triggerGracefulShutdown()`, or the task being cancelled), then calls
/// `shutdownGracefully()` and returns once that has completed: every accepted task ran, every
/// thread is joined, every fd is closed.
import ServiceLifecycle
import VirtualTasks

extension ThreadPoolTaskManager: Service {
  /// Waits for graceful shutdown (or cancellation), then shuts the manager down gracefully and
  /// returns when that completed. Accepted tasks are not cancelled: shutdown waits for them.
  /// Calling `run()` again, or after `shutdownGracefully()`, returns once shutdown is done.
  public func run() async throws {
    // Throws CancellationError when the task is cancelled: shut down all the same.
    try? await gracefulShutdown()
    await shutdownGracefully()
  }
}
