/// Starting and joining named OS threads that run a Swift closure.
///
/// Any thread may start or join one. Failures of `pthread_create` come back as `-errno`
/// (through CShims' fault-injection hook, so tests can refuse threads).
#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif
import CShims

struct OSThread: @unchecked Sendable {  // pthread_t is a plain handle, joined exactly once by its owner
  let handle: pthread_t

  private final class Start {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) {
      self.name = name
      self.body = body
    }
  }

  /// Starts a thread named `name` (truncated to 15 bytes) running `body`.
  /// Returns the thread, or the errno `pthread_create` failed with.
  static func spawn(name: String, stackSize: Int = 0, _ body: @escaping () -> Void) -> Result<OSThread, SpawnErrno> {
    let start = Unmanaged.passRetained(Start(name: name, body: body))
    var handle = pthread_t()
    let r = vt_thread_create(&handle, { raw in
      let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
      _ = start.name.withCString { vt_set_thread_name($0) }
      start.body()
      return nil
    }, start.toOpaque(), stackSize)
    if r != 0 {
      start.release()
      return .failure(SpawnErrno(code: -r))
    }
    return .success(OSThread(handle: handle))
  }

  func join() {
    _ = vt_thread_join(handle)
  }

  /// Lets the thread release its resources on exit without a join.
  func detach() {
    _ = pthread_detach(handle)
  }

  /// True when called on this thread.
  var isCurrent: Bool { pthread_equal(pthread_self(), handle) != 0 }
}

struct SpawnErrno: Error {
  let code: Int32
}

/// The calling thread's name as set by `pthread_setname_np`.
public func currentThreadName() -> String {
  var buf = [CChar](repeating: 0, count: 32)
  _ = vt_get_thread_name(&buf, buf.count)
  let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
  return String(decoding: bytes, as: UTF8.self)
}
