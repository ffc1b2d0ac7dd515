/// The typed error of every call in the task-manager contract.
///
/// Cases mirror wasmer-wasix's `WasiThreadError`, plus the failures a native executor must report
/// instead of crashing or silently dropping work (`shutDown`, `spawnFailed`, `resourceExhausted`,
/// `systemCallFailed`).
public enum WasiThreadError: Error, Sendable, Equatable {
  case unsupported, methodNotFound, invalidWasmContext
  case memoryCreateFailed(String), exportError(String)
  case instanceCreateFailed(String), initFailed(String)
  /// The manager no longer accepts work (it is shutting down or shut down).
  case shutDown
  /// The OS refused a thread (`pthread_create` failed with `errno`) and no live thread can run it.
  case spawnFailed(errno: Int32)
  /// A bounded resource is full (for example the live guest-thread limit).
  case resourceExhausted
  /// A system call failed; `name` is the call, `errno` its error number.
  case systemCallFailed(name: String, errno: Int32)
}

extension WasiThreadError: CustomStringConvertible {
  public var description: String {
    switch self {
    case .unsupported: return "unsupported"
    case .methodNotFound: return "method not found"
    case .invalidWasmContext: return "invalid wasm context"
    case .memoryCreateFailed(let s): return "memory creation failed: \(s)"
    case .exportError(let s): return "export error: \(s)"
    case .instanceCreateFailed(let s): return "instance creation failed: \(s)"
    case .initFailed(let s): return "initialisation failed: \(s)"
    case .shutDown: return "the task manager is shut down"
    case .spawnFailed(let e): return "the OS refused a thread (errno \(e))"
    case .resourceExhausted: return "resource exhausted"
    case .systemCallFailed(let name, let e): return "\(name) failed (errno \(e))"
    }
  }
}
