/// Shared helpers of the wasm tests: the manager under test, bounded waits, shared-memory reads
/// and a thread-safe recorder. Called from test tasks and from guest threads.
import Foundation
import Synchronization
import Testing
import VirtualTasks
import VirtualTasksWasm
import WasmKit

/// A manager that runs every `taskDedicated` on a new OS thread named "<prefix>-b<N>" (a stand-in
/// for `ThreadPoolTaskManager`'s blocking pool, with the same thread names).
final class ThreadPerTaskManager: VirtualWasmTaskManager {
  let prefix: String
  private let started = Atomic<Int>(0)

  init(prefix: String) { self.prefix = prefix }

  func sleepNow(_ duration: Duration) async { try? await Task.sleep(for: duration) }

  func taskShared(_ task: @escaping @Sendable () async -> Void) throws(WasiThreadError) {
    Task.detached { await task() }
  }

  func taskDedicated(_ task: @escaping @Sendable () -> Void) throws(WasiThreadError) {
    let name = "\(prefix)-b\(started.add(1, ordering: .relaxed).newValue)"
    let thread = Thread {
      try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
      task()
    }
    thread.stackSize = 8 << 20
    thread.start()
  }

  func threadParallelism() throws(WasiThreadError) -> Int { 2 }

  func taskWasm(_ task: TaskWasm) throws(WasiThreadError) { try taskWasmOnBlockingPool(task) }
}

/// The prefix of the blocking-pool threads of the manager under test.
let blockingThreadPrefix = "wasmtest-b"

/// A manager for one test.
func makeManager() -> ThreadPerTaskManager {
  ThreadPerTaskManager(prefix: "wasmtest")
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
