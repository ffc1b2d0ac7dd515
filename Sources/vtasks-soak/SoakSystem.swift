/// The soak's own small kit: plain OS threads, pipes whose fds close on deinit, a seeded random
/// generator, and readers of `/proc/self/task` and `/proc/self/fd`.
///
/// Nothing here touches the library under test except through CShims' `vt_pipe`,
/// `vt_thread_count` and `vt_fd_count`. Every type may be used from any thread.
#if canImport(Glibc)
  import Glibc
#endif
import CShims
import Synchronization

// MARK: threads

/// A joinable, named pthread running a Swift closure (the library's own `OSThread` is internal).
struct SoakThread: @unchecked Sendable {  // pthread_t is a plain handle, joined once by its owner
  let handle: pthread_t

  private final class Start {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) {
      self.name = name
      self.body = body
    }
  }

  /// Starts a thread or ends the process: the soak cannot run without its own threads.
  static func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> SoakThread {
    let start = Unmanaged.passRetained(Start(name: name, body: body))
    var handle = pthread_t()
    let r = pthread_create(
      &handle, nil,
      { raw in
        let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
        _ = start.name.withCString { vt_set_thread_name($0) }
        start.body()
        return nil
      }, start.toOpaque())
    if r != 0 {
      start.release()
      fatal("pthread_create for \(name) failed: errno \(r)")
    }
    return SoakThread(handle: handle)
  }

  func join() { _ = pthread_join(handle, nil) }
}

// MARK: locks

/// A value behind a pthread mutex. Not `Synchronization.Mutex`: ThreadSanitizer does not see
/// its futex-based lock as synchronisation and would report every access as a race.
final class Locked<Value>: @unchecked Sendable {  // `value` only under `mutex`
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private var value: Value

  init(_ value: Value) {
    self.value = value
    mutex = .allocate(capacity: 1)
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body(&value)
  }
}

// MARK: pipes

/// A CLOEXEC | NONBLOCK pipe whose two fds close when the last reference goes. Readiness waits and
/// the writer thread share it by reference, so no fd is closed while a wait may still use it.
final class Pipe: Sendable {
  static let live = Atomic<Int>(0)
  static let created = Atomic<Int>(0)
  static let failed = Atomic<Int>(0)

  let readFD: Int32
  let writeFD: Int32

  private init(_ r: Int32, _ w: Int32) {
    readFD = r
    writeFD = w
    Pipe.live.wrappingAdd(1, ordering: .relaxed)
    Pipe.created.wrappingAdd(1, ordering: .relaxed)
  }

  /// A new pipe, or nil when the fd table is full (counted, not fatal).
  static func make() -> Pipe? {
    var fds: [Int32] = [-1, -1]
    let r = fds.withUnsafeMutableBufferPointer { vt_pipe($0.baseAddress!) }
    if r < 0 {
      Pipe.failed.wrappingAdd(1, ordering: .relaxed)
      return nil
    }
    return Pipe(fds[0], fds[1])
  }

  /// Writes one byte; true when it went in (a full pipe says EAGAIN).
  @discardableResult
  func writeByte() -> Bool {
    var byte: UInt8 = 0x2A
    return Glibc.write(writeFD, &byte, 1) == 1
  }

  /// Reads one byte without blocking; true when there was one.
  func readByte() -> Bool {
    var byte: UInt8 = 0
    return Glibc.read(readFD, &byte, 1) == 1
  }

  deinit {
    _ = Glibc.close(readFD)
    _ = Glibc.close(writeFD)
    Pipe.live.wrappingSubtract(1, ordering: .relaxed)
  }
}

// MARK: random

/// SplitMix64: small, fast and good enough to pick a workload; one per thread or per task.
struct SplitMix64: RandomNumberGenerator, Sendable {
  private var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// 0 ..< n.
  mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }

  mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }

  /// A seed for a child task or thread.
  mutating func fork() -> UInt64 { next() }
}

// MARK: /proc

enum Proc {
  static func threadCount() -> Int { Int(vt_thread_count()) }
  static func fdCount() -> Int { Int(vt_fd_count()) }

  /// Names of this process's threads (`/proc/self/task/*/comm`).
  static func threadNames() -> [String] {
    directoryEntries("/proc/self/task").compactMap { tid in
      readSmallFile("/proc/self/task/\(tid)/comm").map { name in
        name.hasSuffix("\n") ? String(name.dropLast()) : name
      }
    }
  }

  /// Threads whose name starts with `prefix`.
  static func threads(named prefix: String) -> [String] {
    threadNames().filter { $0.hasPrefix(prefix) }
  }

  /// Every open fd with what it points at ("pipe:[123]", "anon_inode:[eventpoll]", ...).
  static func openFDs() -> [(fd: Int32, target: String)] {
    directoryEntries("/proc/self/fd").compactMap { name -> (Int32, String)? in
      guard let fd = Int32(name) else { return nil }
      var buf = [CChar](repeating: 0, count: 256)
      let n = readlink("/proc/self/fd/\(name)", &buf, buf.count - 1)
      if n < 0 { return nil }  // the fd of the directory listing itself, closed by now
      let bytes = buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }
      return (fd, String(decoding: bytes, as: UTF8.self))
    }.sorted { $0.0 < $1.0 }
  }

  private static func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  private static func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { _ = Glibc.close(fd) }
    var buf = [UInt8](repeating: 0, count: 256)
    let n = Glibc.read(fd, &buf, buf.count)
    if n < 0 { return nil }
    return String(decoding: buf.prefix(n), as: UTF8.self)
  }
}

// MARK: time and small helpers

/// Seconds since `start` on the continuous clock.
func seconds(since start: ContinuousClock.Instant) -> Double {
  let d = start.duration(to: .now)
  return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func milliseconds(_ d: Duration) -> Double {
  Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15
}

/// Sleeps the calling OS thread (never called on a manager's worker).
func threadSleep(milliseconds ms: Double) {
  if ms <= 0 { return }
  _ = usleep(useconds_t(ms * 1000))
}

/// A few microseconds of arithmetic the optimiser cannot remove.
func spin(_ iterations: Int, seed: UInt64) -> UInt64 {
  var x = seed | 1
  for _ in 0..<iterations {
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
  }
  sink.store(x, ordering: .relaxed)
  return x
}

private let sink = Atomic<UInt64>(0)

func printErr(_ line: String) {
  var text = line
  text.append("\n")
  var bytes = Array(text.utf8)
  _ = Glibc.write(2, &bytes, bytes.count)
}

func fatal(_ message: String) -> Never {
  printErr("vtasks-soak: \(message)")
  exit(2)
}
