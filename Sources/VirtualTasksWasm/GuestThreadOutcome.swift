/// How a guest thread ended, as reported by ``GuestThreadGroup`` to its exit handler and joiners.
///
/// A plain value; built on the guest's own thread when its entry function returns or throws.
import WASI

public enum GuestThreadOutcome: Sendable, Hashable, CustomStringConvertible {
  /// The entry function (`wasi_thread_start`, `_start`) returned.
  case returned
  /// The thread called `proc_exit(code)`: the guest asks for the whole program to end.
  case exited(code: UInt32)
  /// The thread trapped (or a host function it called failed); `message` is one line.
  case trapped(message: String)

  public var description: String {
    switch self {
    case .returned: return "returned"
    case .exited(let code): return "exited with code \(code)"
    case .trapped(let message): return "trapped: \(message)"
    }
  }

  /// Runs a guest entry `body` and classifies how it ended.
  static func of(_ body: () throws -> Void) -> GuestThreadOutcome {
    do {
      try body()
      return .returned
    } catch let exit as WASIExitCode {
      return .exited(code: exit.code)
    } catch {
      return .trapped(message: oneLine(error))
    }
  }
}
