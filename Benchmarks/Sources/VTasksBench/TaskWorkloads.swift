/// W1..W4: task throughput and wake-up latency. Every closure captures only what it must (a
/// `Latch`, at most a semaphore), so no peer pays for a larger closure context than another.
import Dispatch
import NIOCore
import NIOPosix
import VirtualTasks

enum TaskWorkloads {
  static let all: [Workload] = [dedicated, sharedExternal, spawnFromWorker, wakeup]

  // MARK: W1

  static let dedicated = Workload(
    "W1", "dedicated_throughput",
    "N tiny blocking closures submitted from one outside thread; wall time until the last ran.",
    peers: [.vtasks, .nio, .dispatch],
    metrics: [
      MetricSpec("throughput", "throughput", "M/s", .higher, target: Targets.atLeastTimesBest(2))
    ],
    warmup: true
  ) { peer, p, sizes, scale in
    let n = sizes.tasks / scale
    let latch = Latch(n)
    let start = nowNanos()
    switch peer {
    case .vtasks:
      let manager = p.manager
      for _ in 0..<n { try! manager.taskDedicated { latch.done() } }
    case .nio:
      let pool = p.pool
      for _ in 0..<n { pool.submit { _ in latch.done() } }
    case .dispatch:
      let queue = DispatchQueue.global()
      for _ in 0..<n { queue.async { latch.done() } }
    default: fatalError("W1 has no \(peer) column")
    }
    latch.wait(orFail: "W1 \(peer)")
    return ["throughput": Double(n) / Double(nowNanos() - start) * 1e3]
  }

  // MARK: W2

  static let sharedExternal = Workload(
    "W2", "shared_spawn_external",
    "N async tasks (NIO: execute) spawned from one outside thread; wall time until the last ran.",
    peers: [.vtasks, .nio, .dispatch, .swift, .inline],
    metrics: [
      MetricSpec(
        "throughput", "throughput", "M/s", .higher,
        target: Target(text: ">= 3x Swift default and > SwiftNIO") { m in
          guard let v = m[.vtasks], let s = m[.swift], let n = m[.nio] else { return nil }
          return v >= 3 * s && v > n
        })
    ],
    warmup: true
  ) { peer, p, sizes, scale in
    let n = sizes.tasks / scale
    let latch = Latch(n)
    let start = nowNanos()
    switch peer {
    case .vtasks:
      let manager = p.manager
      for _ in 0..<n { try! manager.taskShared { latch.done() } }
    case .nio:
      let group = p.group
      for _ in 0..<n { group.next().execute { latch.done() } }
    case .dispatch:
      let queue = DispatchQueue.global()
      for _ in 0..<n { queue.async { latch.done() } }
    case .swift:
      for _ in 0..<n { Task.detached { latch.done() } }
    case .inline:
      let executor = p.inline
      for _ in 0..<n { Task(executorPreference: executor) { latch.done() } }
    case .cTimerfd, .wasmkit, .continuations: fatalError("W2 has no \(peer) column")
    }
    latch.wait(orFail: "W2 \(peer)")
    return ["throughput": Double(n) / Double(nowNanos() - start) * 1e3]
  }

  // MARK: W3

  static let spawnFromWorker = Workload(
    "W3", "spawn_from_worker",
    "One task on the pool spawns N children (a discarding TaskGroup; NIO: execute from a loop, "
      + "Dispatch: async from a queue block); wall time until the last child ran, peak RSS growth.",
    peers: [.vtasks, .nio, .dispatch, .swift, .inline],
    metrics: [
      MetricSpec(
        "throughput", "throughput", "M/s", .higher,
        target: Target(text: ">= 4x Swift default") { m in
          guard let v = m[.vtasks], let s = m[.swift] else { return nil }
          return v >= 4 * s
        }),
      MetricSpec("peak_rss", "peak RSS growth", "MB", .lower, target: Targets.below(100, "MB")),
    ],
    warmup: true
  ) { peer, p, sizes, scale in
    let n = sizes.tasks / scale
    let latch = Latch(n)
    let baseline = Probe.startPeakWindow()
    let start = nowNanos()
    switch peer {
    case .vtasks:
      try! p.manager.taskShared {
        await withDiscardingTaskGroup { group in
          for _ in 0..<n { group.addTask { latch.done() } }
        }
      }
    case .swift:
      Task.detached {
        await withDiscardingTaskGroup { group in
          for _ in 0..<n { group.addTask { latch.done() } }
        }
      }
    case .inline:
      Task(executorPreference: p.inline) {
        await withDiscardingTaskGroup { group in
          for _ in 0..<n { group.addTask { latch.done() } }
        }
      }
    case .nio:
      let group = p.group
      group.next().execute {
        for _ in 0..<n { group.next().execute { latch.done() } }
      }
    case .dispatch:
      let queue = DispatchQueue.global()
      queue.async {
        for _ in 0..<n { queue.async { latch.done() } }
      }
    case .cTimerfd, .wasmkit, .continuations: fatalError("W3 has no \(peer) column")
    }
    latch.wait(orFail: "W3 \(peer)")
    let elapsed = nowNanos() - start
    return [
      "throughput": Double(n) / Double(elapsed) * 1e3,
      "peak_rss": Probe.peakGrowthMB(since: baseline),
    ]
  }

  // MARK: W4

  static let wakeup = Workload(
    "W4", "wakeup_roundtrip",
    "N sequential round trips from an outside thread: submit a job that signals a semaphore, wait "
      + "for it (vtasks: taskShared).",
    peers: [.vtasks, .nio, .dispatch, .swift],
    metrics: [
      MetricSpec("p50", "p50", "us", .lower, target: Targets.noWorseThanBest(.lower)),
      MetricSpec("p99", "p99", "us", .lower, target: Targets.noWorseThanBest(.lower)),
    ],
    warmup: true
  ) { peer, p, sizes, scale in
    let n = sizes.roundtrips / scale
    let samples = Samples(n)
    let semaphore = DispatchSemaphore(value: 0)
    func measure(_ submit: () -> Void) {
      for i in 0..<n {
        let start = nowNanos()
        submit()
        semaphore.wait()
        samples[i] = nowNanos() - start
      }
    }
    switch peer {
    case .vtasks:
      let manager = p.manager
      measure { try! manager.taskShared { semaphore.signal() } }
    case .nio:
      let group = p.group
      measure { group.next().execute { semaphore.signal() } }
    case .dispatch:
      let queue = DispatchQueue.global()
      measure { queue.async { semaphore.signal() } }
    case .swift:
      measure { Task.detached { semaphore.signal() } }
    default: fatalError("W4 has no \(peer) column")
    }
    let sorted = samples.sorted()
    return ["p50": percentile(sorted, 50) / 1e3, "p99": percentile(sorted, 99) / 1e3]
  }
}
