/// Shared helpers of the wasm tests: the manager under test, bounded waits, shared-memory reads
/// and a thread-safe recorder. Called from test tasks and from guest threads.
import Foundation
import Synchronization
import Testing
import VirtualTasks
import VirtualTasksWasm
import WasmKit

/// The prefix of the blocking-pool threads of the manager under test.
let blockingThreadPrefix = "wasmtest-b"

/// Runs `body` with a fresh `ThreadPoolTaskManager` ("wasmtest-*" threads, `workers` async
/// workers, at most `maxBlocking` blocking threads), then shuts it down gracefully, which joins
/// every thread it started (a no-op when `body` already did).
func withManager<T>(
  workers: Int = 2, maxBlocking: Int? = nil, _ body: (ThreadPoolTaskManager) async throws -> T
) async throws -> T {
  var configuration = ThreadPoolTaskManager.Configuration()
  configuration.workerThreads = workers
  configuration.maxBlockingThreads = maxBlocking
  configuration.threadNamePrefix = "wasmtest"
  let manager = try ThreadPoolTaskManager(configuration: configuration)
  let result: Result<T, any Error>
  do {
    result = .success(try await body(manager))
  } catch {
    result = .failure(error)
  }
  try await within("the manager's shutdown") { await manager.shutdownGracefully() }
  return try result.get()
}

/// The calling thread's name, from the kernel.
func threadName() -> String {
  ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "")
    .trimmingCharacters(in: .whitespacesAndNewlines)
}

struct TimedOut: Error, CustomStringConvertible {
  let what: String
  var description: String { "timed out waiting for \(what)" }
}

/// Waits for `operation`, failing (not hanging) if it takes longer than `seconds`: a bound on a
/// broken test, never a way to let time pass.
func within<T: Sendable>(
  _ what: String, seconds: Double = 20, _ operation: @escaping @Sendable () async -> T
) async throws -> T {
  try await withThrowingTaskGroup(of: T?.self) { group in
    group.addTask { await operation() }
    group.addTask {
      try? await Task.sleep(for: .seconds(seconds))
      return nil
    }
    let first = try await group.next()!
    group.cancelAll()
    guard let value = first else { throw TimedOut(what: what) }
    return value
  }
}

/// Reads the i32 at `offset` of a shared memory (through a throwaway store on this thread).
func loadI32(_ shared: SharedMemory, engine: Engine, at offset: Int) -> Int32 {
  let memory = Memory(store: Store(engine: engine), sharedMemory: shared)
  return memory.withUnsafeBufferPointer(offset: UInt(offset), count: 4) {
    $0.baseAddress!.assumingMemoryBound(to: Atomic<Int32>.self).pointee.load(ordering: .acquiring)
  }
}

/// Stores an i32 at `offset` of a shared memory.
func storeI32(_ shared: SharedMemory, engine: Engine, at offset: Int, _ value: Int32) {
  let memory = Memory(store: Store(engine: engine), sharedMemory: shared)
  memory.withUnsafeMutableBufferPointer(offset: UInt(offset), count: 4) {
    $0.baseAddress!.assumingMemoryBound(to: Atomic<Int32>.self).pointee.store(value, ordering: .releasing)
  }
}

/// A list appended to from any thread.
final class Recorder<Element: Sendable>: Sendable {
  private let items = Mutex<[Element]>([])
  func append(_ item: Element) { items.withLock { $0.append(item) } }
  var all: [Element] { items.withLock { $0 } }
}

/// An imports builder with `test.record(i32)`, which records the id and the calling thread name.
func recordingImports(_ recorder: Recorder<(Int32, String)>) -> GuestThreadGroup.ImportsBuilder {
  { store in
    var imports = Imports()
    imports.define(
      module: "test", name: "record",
      Function(store: store, parameters: [.i32]) { _, arguments in
        recorder.append((Int32(bitPattern: arguments[0].i32), threadName()))
        return []
      })
    return imports
  }
}
