/// The embedded example of `vtasks run`: a wasm32-wasi-threads command in WebAssembly text.
///
/// `_start` splits 1...n into chunks, spawns one guest thread per chunk (a chunk whose spawn is
/// refused, e.g. under `--max-threads 1`, runs on the main thread instead), and each thread adds
/// every number of its chunk to one shared i64 with `i64.atomic.rmw.add`. The main thread waits
/// with `memory.atomic.wait32` until every chunk is done, then prints the sum with WASI
/// `fd_write`. Constant data, so any thread may read it.
public enum ExampleProgram {
  /// Numbers summed: 1...total.
  public static let total: Int64 = 400_000
  /// Chunks, one guest thread each.
  public static let chunks = 8
  /// The sum the example must print.
  public static var expectedSum: Int64 { total * (total + 1) / 2 }
  /// The line it prints.
  public static var expectedOutput: String {
    "sum of 1...\(total) = \(expectedSum), added atomically in \(chunks) chunks\n"
  }

  /// The module, with `total` and `chunks` filled in.
  public static var wat: String {
    """
    (module
      (import "env" "memory" (memory 1 1 shared))
      (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (export "memory" (memory 0))
      ;; Shared memory: 0 sum (i64) · 8 chunks done · 64 iovec · 72 bytes written
      ;; 128... the output line · 512... scratch digits. Passive data, copied by _start only
      ;; (an active segment would be re-applied by every thread's instance).
      (data $sum_of "sum of 1...")
      (data $equals " = ")
      (data $added ", added atomically in ")
      (data $chunks_text " chunks\\n")
      (global $total i64 (i64.const \(total)))
      (global $chunks i32 (i32.const \(chunks)))

      ;; Adds every number of chunk k to the shared sum, then counts the chunk done.
      (func $add_chunk (param $k i32)
        (local $i i64) (local $end i64) (local $per i64)
        (local.set $per (i64.div_u (global.get $total) (i64.extend_i32_u (global.get $chunks))))
        (local.set $i (i64.add (i64.mul (i64.extend_i32_u (local.get $k)) (local.get $per)) (i64.const 1)))
        (local.set $end
          (if (result i64) (i32.eq (local.get $k) (i32.sub (global.get $chunks) (i32.const 1)))
            (then (global.get $total))
            (else (i64.mul (i64.extend_i32_u (i32.add (local.get $k) (i32.const 1))) (local.get $per)))))
        (block $done
          (loop $add
            (br_if $done (i64.gt_u (local.get $i) (local.get $end)))
            (drop (i64.atomic.rmw.add (i32.const 0) (local.get $i)))
            (local.set $i (i64.add (local.get $i) (i64.const 1)))
            (br $add)))
        (drop (i32.atomic.rmw.add (i32.const 8) (i32.const 1)))
        (drop (memory.atomic.notify (i32.const 8) (i32.const 1))))

      (func (export "wasi_thread_start") (param $tid i32) (param $k i32)
        (call $add_chunk (local.get $k)))

      ;; Writes v in decimal at pos; returns the position after it.
      (func $put_u64 (param $pos i32) (param $v i64) (result i32)
        (local $end i32)
        (local.set $end (i32.const 512))
        (loop $digit
          (i32.store8 (local.get $end)
            (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
          (local.set $end (i32.add (local.get $end) (i32.const 1)))
          (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
          (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
        (loop $copy
          (local.set $end (i32.sub (local.get $end) (i32.const 1)))
          (i32.store8 (local.get $pos) (i32.load8_u (local.get $end)))
          (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
          (br_if $copy (i32.gt_u (local.get $end) (i32.const 512))))
        (local.get $pos))

      (func (export "_start")
        (local $k i32) (local $done i32) (local $pos i32)
        (block $spawned
          (loop $spawn_next
            (br_if $spawned (i32.ge_u (local.get $k) (global.get $chunks)))
            (if (i32.lt_s (call $spawn (local.get $k)) (i32.const 0))
              (then (call $add_chunk (local.get $k))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $spawn_next)))
        (block $all_done
          (loop $wait
            (local.set $done (i32.atomic.load (i32.const 8)))
            (br_if $all_done (i32.ge_u (local.get $done) (global.get $chunks)))
            (drop (memory.atomic.wait32 (i32.const 8) (local.get $done) (i64.const -1)))
            (br $wait)))
        (local.set $pos (i32.const 128))
        (memory.init $sum_of (local.get $pos) (i32.const 0) (i32.const 11))
        (local.set $pos (call $put_u64 (i32.add (local.get $pos) (i32.const 11)) (global.get $total)))
        (memory.init $equals (local.get $pos) (i32.const 0) (i32.const 3))
        (local.set $pos (call $put_u64 (i32.add (local.get $pos) (i32.const 3)) (i64.atomic.load (i32.const 0))))
        (memory.init $added (local.get $pos) (i32.const 0) (i32.const 22))
        (local.set $pos
          (call $put_u64 (i32.add (local.get $pos) (i32.const 22)) (i64.extend_i32_u (global.get $chunks))))
        (memory.init $chunks_text (local.get $pos) (i32.const 0) (i32.const 8))
        (local.set $pos (i32.add (local.get $pos) (i32.const 8)))
        (i32.store (i32.const 64) (i32.const 128))
        (i32.store (i32.const 68) (i32.sub (local.get $pos) (i32.const 128)))
        (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72))))
    )
    """
  }
}
