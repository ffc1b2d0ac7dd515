/// How `vtasks` talks to a person: one-line errors on standard error, and a live progress line
/// for work longer than a second. Standard output carries only results (text or `--json`).
///
/// The progress line is drawn on standard error when it is a terminal, or when
/// `VTASKS_PROGRESS=1`; `VTASKS_PROGRESS=0` turns it off. It appears after one second, is
/// redrawn every 200 ms, and is erased before anything else is printed.
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

enum Terminal {
  /// Writes `vtasks: error: <message>` as one line on standard error.
  static func printError(_ message: String) {
    let line = message.split(whereSeparator: \.isNewline).map {
      $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }.joined(separator: " ")
    FileHandle.standardError.write(Data("vtasks: error: \(line)\n".utf8))
  }

  /// Whether a progress line may be drawn on standard error.
  static var progressEnabled: Bool {
    switch ProcessInfo.processInfo.environment["VTASKS_PROGRESS"] {
    case "1": true
    case "0": false
    default: isatty(STDERR_FILENO) != 0
    }
  }

  /// `1234.5 ms` as `1.2 s`.
  static func seconds(_ duration: Duration) -> String {
    let (s, atto) = duration.components
    return String(format: "%.1f s", Double(s) + Double(atto) / 1e18)
  }
}

/// A status line on standard error, redrawn while long work runs; `stop()` erases it.
/// Threads: created and stopped by the command; drawn by its own task. Every write happens
/// under `state`'s lock, so nothing is drawn after `stop()` returns.
final class ProgressLine: Sendable {
  private struct State {
    var stopped = false
    var shown = false
    var ticker: Task<Void, Never>?
  }
  private let state = Mutex(State())
  private let started = ContinuousClock.now

  /// Starts drawing `status(elapsed)` after `delay`, when progress is enabled.
  init(
    delay: Duration = .seconds(1), every interval: Duration = .milliseconds(200),
    enabled: Bool = Terminal.progressEnabled,
    status: @escaping @Sendable (_ elapsed: Duration) -> String
  ) {
    guard enabled else { return }
    let ticker = Task.detached { [self] in
      try? await Task.sleep(for: delay)
      while !Task.isCancelled {
        draw(status(ContinuousClock.now - started))
        try? await Task.sleep(for: interval)
      }
    }
    state.withLock { $0.ticker = ticker }
  }

  private func draw(_ text: String) {
    state.withLock { state in
      if state.stopped { return }
      state.shown = true
      FileHandle.standardError.write(Data("\r\u{1B}[2K\(text)".utf8))
    }
  }

  /// Erases the line and stops drawing. Idempotent.
  func stop() {
    state.withLock { state in
      if state.stopped { return }
      state.stopped = true
      state.ticker?.cancel()
      if state.shown { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
    }
  }

  deinit { stop() }
}
