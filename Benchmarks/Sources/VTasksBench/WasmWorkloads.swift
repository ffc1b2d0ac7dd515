/// WA1, WA2: wasi-threads guest threads, `GuestThreadGroup` on a `ThreadPoolTaskManager` (threads
/// reused from its blocking pool) against WasmKit's own `WASIThreads` (a new pthread per
/// `thread-spawn`). One module, one engine; for both peers the benchmark thread builds the main
/// instance itself and calls its exports, and every guest thread gets its own store and instance.
import Foundation
import Synchronization
import VirtualTasks
import VirtualTasksWasm
import WasmKit
import WasmKitWASIThreads

enum WasmWorkloads {
  static let all: [Workload] = [spawnJoin, atomicAdds]

  // MARK: WA1

  static let spawnJoin = Workload(
    "WA1", "wasm_spawn_join",
    "N sequential spawn_join calls from the host: the guest spawns one thread (wasi.thread-spawn) "
      + "that sets a flag and notifies, and waits for it (memory.atomic.wait32).",
    peers: [.vtasks, .wasmkit],
    metrics: [
      MetricSpec(
        "p50", "spawn+join p50", "us", .lower,
        target: Target(text: "<= 0.5x WasmKit WASIThreads") { m in
          guard let v = m[.vtasks], let w = m[.wasmkit] else { return nil }
          return v <= 0.5 * w
        }),
      MetricSpec("p99", "spawn+join p99", "us", .lower),
    ],
    warmup: true
  ) { peer, p, sizes, scale in
    let n = max(1, sizes.wasmSpawns / scale)
    let hosts = p.wasm.hosts
    let samples = Samples(n)
    hosts.withMainInstance(peer) { instance in
      let spawnJoin = instance.exports[function: "spawn_join"]!
      for i in 0..<n {
        let start = nowNanos()
        let result = try! spawnJoin()
        samples[i] = nowNanos() - start
        guard case .i32(let tid) = result.first, Int32(bitPattern: tid) > 0 else {
          fatalError("WA1 \(peer): thread-spawn refused (\(result)) at call \(i)")
        }
      }
    }
    let sorted = samples.sorted()
    return ["p50": percentile(sorted, 50) / 1e3, "p99": percentile(sorted, 99) / 1e3]
  }

  // MARK: WA2

  static let atomicAdds = Workload(
    "WA2", "wasm_atomic_adds",
    "One atomic_adds call: the guest spawns T threads, each doing M i64.atomic.rmw.add of 1 on one "
      + "shared i64, and waits until all are done; wall time of the call (sum checked).",
    peers: [.vtasks, .wasmkit],
    metrics: [MetricSpec("wall", "wall", "ms", .lower)],
    warmup: true
  ) { peer, p, sizes, scale in
    let threads = sizes.wasmThreads
    let perThread = max(1, sizes.wasmAddsPerThread / scale)
    let hosts = p.wasm.hosts
    var elapsed: Int64 = 0
    hosts.withMainInstance(peer) { instance in
      let atomicAdds = instance.exports[function: "atomic_adds"]!
      let start = nowNanos()
      let result = try! atomicAdds([.i32(UInt32(threads)), .i32(UInt32(perThread))])
      elapsed = nowNanos() - start
      let expected = Int64(threads) * Int64(perThread)
      guard case .i64(let sum) = result.first, Int64(bitPattern: sum) == expected else {
        fatalError(
          "WA2 \(peer): atomic_adds returned \(result), expected [\(expected)] (-1: a spawn was refused)")
      }
    }
    return ["wall": Double(elapsed) / 1e6]
  }

  // MARK: the module

  /// Shared memory: 0 flag (WA1) · 8 sum (i64) · 16 threads done · 20 adds per thread (WA2).
  /// `wasi_thread_start`'s argument tells the two thread kinds apart: 0 sets the flag, 1 adds.
  static let wat = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))

      (func (export "wasi_thread_start") (param $tid i32) (param $kind i32)
        (local $i i32) (local $n i32)
        (if (i32.eqz (local.get $kind))
          (then
            (i32.atomic.store (i32.const 0) (i32.const 1))
            (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))
            (return)))
        (local.set $n (i32.atomic.load (i32.const 20)))
        (block $done
          (loop $add
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (drop (i64.atomic.rmw.add (i32.const 8) (i64.const 1)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $add)))
        (drop (i32.atomic.rmw.add (i32.const 16) (i32.const 1)))
        (drop (memory.atomic.notify (i32.const 16) (i32.const 1))))

      ;; Spawns one flag-setting thread and waits for the flag; returns the thread id, or the
      ;; (negative) result of a refused spawn.
      (func (export "spawn_join") (result i32)
        (local $tid i32)
        (i32.atomic.store (i32.const 0) (i32.const 0))
        (local.set $tid (call $spawn (i32.const 0)))
        (if (i32.lt_s (local.get $tid) (i32.const 0)) (then (return (local.get $tid))))
        (block $set
          (loop $wait
            (br_if $set (i32.eq (i32.atomic.load (i32.const 0)) (i32.const 1)))
            (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
            (br $wait)))
        (local.get $tid))

      ;; Spawns $threads adding threads and waits until every one is done; returns the sum, or
      ;; -1 when a spawn was refused (the threads already started are not waited for).
      (func (export "atomic_adds") (param $threads i32) (param $per i32) (result i64)
        (local $k i32) (local $done i32)
        (i64.atomic.store (i32.const 8) (i64.const 0))
        (i32.atomic.store (i32.const 16) (i32.const 0))
        (i32.atomic.store (i32.const 20) (local.get $per))
        (block $spawned
          (loop $next
            (br_if $spawned (i32.ge_u (local.get $k) (local.get $threads)))
            (if (i32.lt_s (call $spawn (i32.const 1)) (i32.const 0)) (then (return (i64.const -1))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $next)))
        (block $all_done
          (loop $wait
            (local.set $done (i32.atomic.load (i32.const 16)))
            (br_if $all_done (i32.ge_u (local.get $done) (local.get $threads)))
            (drop (memory.atomic.wait32 (i32.const 16) (local.get $done) (i64.const -1)))
            (br $wait)))
        (i64.atomic.load (i32.const 8)))
    )
    """
}

/// The two guest-thread hosts of WA1 and WA2, kept across runs (so vtasks' blocking threads are
/// reused from run to run, as in a long-lived embedder).
final class WasmHosts: Sendable {
  /// 64 adding threads (WA2), the main instance, one to spare.
  static let maxThreads = 66

  let module: Module
  let engine: Engine
  /// Its own manager: `PeerSet.manager` caps the blocking pool at the thread count, too few for
  /// 64 guest threads. Default `maxBlockingThreads` (at least 200).
  let manager: ThreadPoolTaskManager
  let group: GuestThreadGroup
  let wasiThreads: WASIThreads

  init(threads: Int) throws {
    module = try WasmThreads.parseModule(wat: WasmWorkloads.wat)
    engine = WasmThreads.makeEngine()
    var configuration = ThreadPoolTaskManager.Configuration()
    configuration.workerThreads = threads
    configuration.threadNamePrefix = "bench-wasm"
    manager = try ThreadPoolTaskManager(configuration: configuration)
    group = try GuestThreadGroup(
      manager: manager, module: module, engine: engine,
      configuration: .init(maxThreads: Self.maxThreads))
    wasiThreads = try WASIThreads(
      module: module, engine: engine, configuration: .init(maximumThreads: Self.maxThreads),
      processControl: WASIThreadsProcessControl(
        terminateAfterMainReturn: { code in fatalError("WASIThreads: main exited with \(code)") },
        terminateAfterWorkerFailure: { error in fatalError("WASIThreads: a guest thread failed: \(error)") }
      ),
      childImports: { _ in Imports() })
  }

  /// Builds `peer`'s main instance in a new store on the calling thread, hands it to `body` (the
  /// store and instance never leave this thread), then waits until the guest threads `body`
  /// started are gone, so runs never overlap: vtasks until the group is idle, WasmKit until the
  /// process has no more OS threads than before (it keeps no count of its own, and a pthread
  /// may still be exiting after the guest saw its thread finish).
  func withMainInstance(_ peer: Peer, _ body: (Instance) -> Void) {
    let threadsBefore = Self.osThreads()
    let store = Store(engine: engine)
    let instance: Instance
    do {
      switch peer {
      case .vtasks:
        var imports = Imports()
        group.link(into: &imports, store: store)
        imports.define(
          module: "env", name: "memory", Memory(store: store, sharedMemory: group.sharedMemory))
        instance = try module.instantiate(store: store, imports: imports)
      case .wasmkit:
        instance = try module.instantiate(store: store, imports: wasiThreads.makeImports(store: store))
      default: fatalError("WA1/WA2 have no \(peer) column")
      }
    } catch {
      fatalError("\(peer): cannot instantiate the main instance: \(error)")
    }
    body(instance)
    if peer == .vtasks {
      group.waitUntilIdle()
    } else if !waitUntil(timeoutNanos: 10_000_000_000, { Self.osThreads() <= threadsBefore }) {
      writeStderr("\n\(peer.title): guest threads still exiting after 10 s; going on\n")
    }
  }

  /// The process's OS threads, from `/proc/self/task`.
  static func osThreads() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
  }
}

/// `WasmHosts`, made on first use (a run without WA1/WA2 starts none of its threads) and shut
/// down with the other executors.
final class LazyWasmHosts: Sendable {
  private let threads: Int
  private let made = Mutex<WasmHosts?>(nil)

  init(threads: Int) { self.threads = threads }

  var hosts: WasmHosts {
    made.withLock { state in
      if let made = state { return made }
      do {
        let hosts = try WasmHosts(threads: threads)
        state = hosts
        return hosts
      } catch {
        fatalError("cannot set up the wasm hosts: \(error)")
      }
    }
  }

  func shutdown() async {
    guard let hosts = made.withLock({ $0 }) else { return }
    await hosts.manager.shutdownGracefully()
  }
}
