/// WAT fixtures of the wasm tests, assembled with WasmKit's WAT module (`.threads` enabled).
///
/// Shared-memory layout used by the thread fixtures (byte offsets):
/// 0 counter · 4 done · 8 refused spawns · 12 N (written by the host before `_start`)
/// 16 main finished · 20 release flag · 32... spawn results (one i32 per spawn).
enum Fixtures {
  /// `_start` spawns N threads (start argument = index), counts refused spawns (as done, so it
  /// never waits for them), then waits with `memory.atomic.wait32` until all N are done.
  /// Each thread records itself (`test.record`), adds 1 to the counter 100k times with
  /// `i32.atomic.rmw.add`, then counts itself done and notifies.
  static let counter = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (import "test" "record" (func $record (param i32)))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param $tid i32) (param $arg i32)
        (local $i i32)
        (call $record (local.get $tid))
        (loop $add
          (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $add (i32.lt_u (local.get $i) (i32.const 100000))))
        (drop (i32.atomic.rmw.add (i32.const 4) (i32.const 1)))
        (drop (memory.atomic.notify (i32.const 4) (i32.const 1))))
      (func (export "_start")
        (local $n i32) (local $k i32) (local $done i32)
        (local.set $n (i32.atomic.load (i32.const 12)))
        (block $spawned
          (loop $spawn_next
            (br_if $spawned (i32.ge_u (local.get $k) (local.get $n)))
            (if (i32.lt_s (call $spawn (local.get $k)) (i32.const 0))
              (then
                (drop (i32.atomic.rmw.add (i32.const 8) (i32.const 1)))
                (drop (i32.atomic.rmw.add (i32.const 4) (i32.const 1)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $spawn_next)))
        (block $all_done
          (loop $wait
            (local.set $done (i32.atomic.load (i32.const 4)))
            (br_if $all_done (i32.ge_u (local.get $done) (local.get $n)))
            (drop (memory.atomic.wait32 (i32.const 4) (local.get $done) (i64.const -1)))
            (br $wait)))
        (i32.atomic.store (i32.const 16) (i32.const 1)))
    )
    """

  /// `_start` spawns N threads and returns. Each thread arrives at a barrier (counter at 0);
  /// all but the last wait with `memory.atomic.wait32` until the last one opens it (flag at 20),
  /// then each counts itself through (done at 4).
  static let barrier = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param $tid i32) (param $arg i32)
        (if (i32.eq (i32.add (i32.atomic.rmw.add (i32.const 0) (i32.const 1)) (i32.const 1))
                    (i32.atomic.load (i32.const 12)))
          (then
            (i32.atomic.store (i32.const 20) (i32.const 1))
            (drop (memory.atomic.notify (i32.const 20) (i32.const -1))))
          (else
            (block $open
              (loop $wait
                (br_if $open (i32.atomic.load (i32.const 20)))
                (drop (memory.atomic.wait32 (i32.const 20) (i32.const 0) (i64.const -1)))
                (br $wait)))))
        (drop (i32.atomic.rmw.add (i32.const 4) (i32.const 1))))
      (func (export "_start")
        (local $k i32)
        (block $spawned
          (loop $spawn_next
            (br_if $spawned (i32.ge_u (local.get $k) (i32.atomic.load (i32.const 12))))
            (if (i32.lt_s (call $spawn (local.get $k)) (i32.const 0))
              (then (drop (i32.atomic.rmw.add (i32.const 8) (i32.const 1)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $spawn_next))))
    )
    """

  /// `_start` spawns N threads that wait until the release flag (20) is set, storing each
  /// spawn's result at 32 + 4k, then sets the flag, wakes them all and returns.
  static let limit = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param $tid i32) (param $arg i32)
        (block $released
          (loop $wait
            (br_if $released (i32.atomic.load (i32.const 20)))
            (drop (memory.atomic.wait32 (i32.const 20) (i32.const 0) (i64.const -1)))
            (br $wait)))
        (drop (i32.atomic.rmw.add (i32.const 4) (i32.const 1))))
      (func (export "_start")
        (local $k i32)
        (block $spawned
          (loop $spawn_next
            (br_if $spawned (i32.ge_u (local.get $k) (i32.atomic.load (i32.const 12))))
            (i32.atomic.store
              (i32.add (i32.const 32) (i32.shl (local.get $k) (i32.const 2)))
              (call $spawn (local.get $k)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $spawn_next)))
        (i32.atomic.store (i32.const 20) (i32.const 1))
        (drop (memory.atomic.notify (i32.const 20) (i32.const -1))))
    )
    """

  /// `_start` spawns threads with start arguments 0, 1, 2 and returns; thread 1 executes
  /// `unreachable`, the others add 1 to the counter.
  static let trap = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param $tid i32) (param $arg i32)
        (if (i32.eq (local.get $arg) (i32.const 1)) (then unreachable))
        (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1))))
      (func (export "_start")
        (drop (call $spawn (i32.const 0)))
        (drop (call $spawn (i32.const 1)))
        (drop (call $spawn (i32.const 2))))
    )
    """

  /// A wasi-threads module without `wasi_thread_start`.
  static let noThreadStart = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (export "memory" (memory 0))
      (func (export "_start")
        (if (i32.ge_s (call $spawn (i32.const 0)) (i32.const 0)) (then unreachable))))
    """

  /// A module with a plain (unshared) memory import, for `.copyMemory`.
  static let peekPoke = """
    (module
      (import "env" "memory" (memory 1))
      (export "memory" (memory 0))
      (func (export "peek") (result i32) (i32.load8_u (i32.const 100)))
      (func (export "poke") (i32.store8 (i32.const 100) (i32.const 7))))
    """

  /// A module importing a shared memory with the wasm32 maximum, for `.createMemoryOfType`.
  static let sharedImport = """
    (module
      (import "env" "memory" (memory 1 65536 shared))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param i32 i32)))
    """

  /// A module whose start function traps: instantiation fails.
  static let trappingStart = """
    (module
      (func $boom unreachable)
      (start $boom))
    """

  /// A module importing a function nobody provides: instantiation fails.
  static let missingImport = """
    (module
      (import "host" "absent" (func))
      (func (export "wasi_thread_start") (param i32 i32)))
    """

  /// A module that defines its own memory and exports a function.
  static let standalone = """
    (module
      (memory (export "memory") 1)
      (func (export "answer") (result i32) (i32.const 42)))
    """
}

extension Fixtures {
  /// A WASI program whose one guest thread does what the mode at offset 12 says:
  /// 1 traps, 2 calls `proc_exit(7)`, 3 waits for the release flag (20). `_start` returns at
  /// once in mode 3 and otherwise waits for the release flag itself. `wake` (for a host
  /// instance) sets the flag and wakes every waiter.
  static let program = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (export "memory" (memory 0))
      (func $wait_for_release
        (block $released
          (loop $wait
            (br_if $released (i32.atomic.load (i32.const 20)))
            (drop (memory.atomic.wait32 (i32.const 20) (i32.const 0) (i64.const -1)))
            (br $wait))))
      (func (export "wasi_thread_start") (param $tid i32) (param $mode i32)
        (if (i32.eq (local.get $mode) (i32.const 1)) (then unreachable))
        (if (i32.eq (local.get $mode) (i32.const 2)) (then (call $proc_exit (i32.const 7))))
        (call $wait_for_release))
      (func (export "_start")
        (if (i32.lt_s (call $spawn (i32.atomic.load (i32.const 12))) (i32.const 0)) (then unreachable))
        (if (i32.ne (i32.atomic.load (i32.const 12)) (i32.const 3)) (then (call $wait_for_release))))
    )
    """

  /// Sets the release flag (20) of a shared memory and wakes its waiters.
  static let waker = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (func (export "wake")
        (i32.atomic.store (i32.const 20) (i32.const 1))
        (drop (memory.atomic.notify (i32.const 20) (i32.const -1)))))
    """

  /// `_start` exits with 3 when its one spawn is refused, with 0 otherwise.
  static let spawnOnce = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (export "memory" (memory 0))
      (func (export "wasi_thread_start") (param i32 i32))
      (func (export "_start")
        (if (i32.lt_s (call $spawn (i32.const 0)) (i32.const 0)) (then (call $proc_exit (i32.const 3))))))
    """

  /// WasmKit's wasi-threads fixtures: `_start` returns while its thread spins forever; a worker
  /// calls `proc_exit(7)` while `_start` spins; a worker traps while `_start` spins.
  static let mainReturnsWhileThreadSpins = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (export "memory" (memory 0))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (func (export "wasi_thread_start") (param i32 i32) (loop br 0))
      (func (export "_start") (drop (call $spawn (i32.const 0)))))
    """
  static let workerExitsWhileMainSpins = """
    (module
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (import "env" "memory" (memory 1 1 shared))
      (export "memory" (memory 0))
      (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
      (func (export "wasi_thread_start") (param i32 i32) (call $proc_exit (i32.const 7)))
      (func (export "_start") (drop (call $spawn (i32.const 0))) (loop br 0)))
    """
  static let workerTrapsWhileMainSpins = """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (export "memory" (memory 0))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (func (export "wasi_thread_start") (param i32 i32) unreachable)
      (func (export "_start") (drop (call $spawn (i32.const 0))) (loop br 0)))
    """
}
