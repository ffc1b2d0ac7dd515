/// Allocation budgets (issue 7): mallocs per `taskDedicated`, `taskShared`, `sleepNow`, fd
/// readiness wait and scheduled task (`taskShared(after:)`, due at once: its timer, firing and
/// task), counted by package-benchmark's malloc interposer over every thread of the
/// process. Each sample does 1000 operations (`scalingFactor: .kilo`) and waits until all of them
/// have finished, so work the pool threads do on the caller's behalf is inside the count; the
/// thresholds under `Thresholds/<swift>/` are therefore mallocs per 1000 operations (p90).
///
/// Closures passed to the manager capture a single class reference, which Swift uses as the
/// closure context directly: a count here is the library's (and the Swift runtime's), never the
/// benchmark's closure boxes. `taskShared_runtimeBaseline` is the Swift runtime's own cost of a
/// task on the same executor (`Task(executorPreference: manager)`), to subtract from `taskShared`.
///
/// The blocking pool is capped at `Parallelism.available()` threads, as in `vtasks-bench`: its
/// threads are then all started during the warm-up, and no sample pays for a thread spawn.
import Benchmark
import Dispatch
import Synchronization
import VirtualTasks

#if canImport(Glibc)
  import Glibc
#endif

/// Reusable countdown: set before a batch, counted down by the batch, waited on by the sample.
final class Countdown: Sendable {
  private let remaining = Atomic<Int>(0)
  private let semaphore = DispatchSemaphore(value: 0)

  func reset(_ count: Int) { remaining.store(count, ordering: .releasing) }

  @inline(__always) func done() {
    if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { semaphore.signal() }
  }

  /// A sample that does not finish within a minute is a bug (a lost wake-up, a lost timer): fail
  /// with the manager's state rather than hang `make bench-check`.
  func wait(_ manager: ThreadPoolTaskManager) {
    if semaphore.wait(timeout: .now() + .seconds(60)) == .timedOut {
      fatalError("a sample did not finish within 60 s: \(manager.metrics())")
    }
  }
}

/// A pipe whose read end is always readable while a byte sits in it.
final class Pipe: Sendable {
  let readFD: Int32
  let writeFD: Int32

  init() {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0, "pipe failed")
    readFD = fds[0]
    writeFD = fds[1]
  }

  func put() {
    var byte: UInt8 = 1
    precondition(write(writeFD, &byte, 1) == 1)
  }

  func take() {
    var byte: UInt8 = 0
    precondition(read(readFD, &byte, 1) == 1)
  }
}

let benchmarks: @Sendable () -> Void = {
  var configuration = ThreadPoolTaskManager.Configuration()
  configuration.threadNamePrefix = "alloc"
  configuration.maxBlockingThreads = Parallelism.available()
  let manager = try! ThreadPoolTaskManager(configuration: configuration)
  let countdown = Countdown()
  let pipe = Pipe()

  Benchmark.defaultConfiguration = .init(
    metrics: [.mallocCountTotal],
    warmupIterations: 3,
    scalingFactor: .kilo,
    maxDuration: .seconds(20),
    maxIterations: 25,
    // Counts are deterministic to within a few allocations per 1000 operations (a queue or heap
    // growing at a different moment); anything above that is a regression.
    thresholds: [.mallocCountTotal: .init(absolute: [.p90: 5])]
  )

  Benchmark("taskDedicated") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(n)
    benchmark.startMeasurement()
    for _ in 0..<n { try! manager.taskDedicated { countdown.done() } }
    countdown.wait(manager)
  }

  Benchmark("taskShared") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(n)
    benchmark.startMeasurement()
    for _ in 0..<n { try! manager.taskShared { countdown.done() } }
    countdown.wait(manager)
  }

  Benchmark("taskShared_runtimeBaseline") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(n)
    benchmark.startMeasurement()
    for _ in 0..<n { Task(executorPreference: manager) { countdown.done() } }
    countdown.wait(manager)
  }

  Benchmark("taskSharedAfter") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(n)
    benchmark.startMeasurement()
    for _ in 0..<n { try! manager.taskShared(after: .nanoseconds(1)) { countdown.done() } }
    countdown.wait(manager)
  }

  Benchmark("sleepNow") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(1)
    benchmark.startMeasurement()
    try! manager.taskShared {
      for _ in 0..<n { await manager.sleepNow(.nanoseconds(1)) }
      countdown.done()
    }
    countdown.wait(manager)
  }

  Benchmark("readable") { benchmark in
    let n = benchmark.scaledIterations.count
    countdown.reset(1)
    benchmark.startMeasurement()
    try! manager.taskShared {
      for _ in 0..<n {
        pipe.put()
        try! await manager.readable(pipe.readFD)
        pipe.take()
      }
      countdown.done()
    }
    countdown.wait(manager)
  }
}
