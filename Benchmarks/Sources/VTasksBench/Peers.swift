/// The columns of the table: this library, the peers a Swift user would pick instead, and the two
/// floors. `PeerSet` owns the long-lived executors (one manager, one NIO group, one NIO thread
/// pool, and the guest-thread hosts of WA1/WA2 once used), all sized to
/// `Parallelism.available()`, and shuts them down at the end.
import NIOCore
import NIOPosix
import VirtualTasks

enum Peer: String, CaseIterable, Sendable {
  case vtasks
  case nio
  case dispatch
  case swift
  /// WasmKit's own wasi-threads host (WA1, WA2).
  case wasmkit
  /// Floor: an absolute timerfd loop in C (W6).
  case cTimerfd = "c-timerfd"
  /// Floor: Swift task creation with an executor that runs each job on the enqueuing thread (W2, W3).
  case inline
  /// Floor: tasks that wait on plain continuations, with no timer at all (W5: resumed, W7: cancelled).
  case continuations = "bare-continuations"

  var title: String {
    switch self {
    case .vtasks: "vtasks"
    case .nio: "SwiftNIO"
    case .dispatch: "Dispatch"
    case .swift: "Swift default"
    case .wasmkit: "WasmKit WASIThreads"
    case .cTimerfd: "floor: C timerfd"
    case .inline: "floor: inline executor"
    case .continuations: "floor: bare continuations"
    }
  }

  /// Floors are limits, not choices: never the "best peer" of a row.
  var isFloor: Bool { self == .cTimerfd || self == .inline || self == .continuations }

  /// Which API of the peer the workloads use.
  var apiNote: String {
    switch self {
    case .vtasks:
      "ThreadPoolTaskManager: taskDedicated, taskShared, TaskGroup children via executor preference, "
        + "sleepNow; guest threads: GuestThreadGroup on its blocking pool (threads reused)"
    case .nio: "MultiThreadedEventLoopGroup execute/scheduleTask, NIOThreadPool.submit"
    case .dispatch: "DispatchQueue.global().async / asyncAfter"
    case .swift: "Task.detached, TaskGroup, Task.sleep (Swift's global concurrent executor)"
    case .wasmkit: "WasmKitWASIThreads: a new pthread per thread-spawn"
    case .cTimerfd: "timerfd_settime(TFD_TIMER_ABSTIME) + read, 1 ns timer slack"
    case .inline: "Task(executorPreference:) on an executor running each job synchronously"
    case .continuations:
      "tasks on this library's workers, each awaiting a plain continuation, with no timer: W5, "
        + "taskShared tasks that one thread resumes in deadline order once all are suspended (what "
        + "creating, suspending, resuming and finishing N live tasks costs in the Swift runtime); "
        + "W7, a TaskGroup whose children's cancellation handlers resume them (what cancelling "
        + "and finishing them costs)"
    }
  }
}

/// A `TaskExecutor` that runs each job synchronously on the thread that enqueues it: what task
/// creation costs in the Swift runtime alone, with no queue and no thread hop.
final class InlineExecutor: TaskExecutor {
  func enqueue(_ job: consuming ExecutorJob) {
    job.runSynchronously(on: asUnownedTaskExecutor())
  }
}

final class PeerSet: Sendable {
  let threads: Int
  let manager: ThreadPoolTaskManager
  let group: MultiThreadedEventLoopGroup
  let pool: NIOThreadPool
  let inline = InlineExecutor()
  let wasm: LazyWasmHosts

  init(threads: Int) throws {
    self.threads = threads
    wasm = LazyWasmHosts(threads: threads)
    var configuration = ThreadPoolTaskManager.Configuration()
    configuration.workerThreads = threads
    configuration.maxBlockingThreads = threads
    configuration.threadNamePrefix = "bench"
    manager = try ThreadPoolTaskManager(configuration: configuration)
    group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    pool = NIOThreadPool(numberOfThreads: threads)
    pool.start()
  }

  func shutdown() async {
    await manager.shutdownGracefully()
    try? await group.shutdownGracefully()
    try? await pool.shutdownGracefully()
    await wasm.shutdown()
  }
}
