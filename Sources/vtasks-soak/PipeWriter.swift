/// The writer thread: writes one byte into a pipe at a requested time, from a thread that belongs
/// to neither the manager nor Swift's executors, so readiness waits end by a real cross-thread write.
///
/// `write(_:after:)` from any thread; `stop()` from the driver once, after which pending requests
/// are dropped (their pipes close when the last waiter lets go).
import Synchronization

final class PipeWriter: Sendable {
  private struct Request {
    let due: ContinuousClock.Instant
    let pipe: Pipe
  }

  /// Locking rule: `requests` only under this lock.
  private let requests = Locked<[Request]>([])
  private let stopping = Atomic<Bool>(false)
  private let thread = Locked<SoakThread?>(nil)
  let written = Counter()

  func start() {
    let t = SoakThread.spawn(name: "soak-writer") { [self] in self.run() }
    thread.withLock { $0 = t }
  }

  func write(_ pipe: Pipe, after delay: Duration) {
    let request = Request(due: .now + delay, pipe: pipe)
    requests.withLock { $0.append(request) }
  }

  func stop() {
    stopping.store(true, ordering: .releasing)
    let t = thread.withLock { t -> SoakThread? in
      defer { t = nil }
      return t
    }
    t?.join()
    requests.withLock { $0.removeAll() }
  }

  private func run() {
    var due: [Request] = []
    while !stopping.load(ordering: .acquiring) {
      threadSleep(milliseconds: 0.3)
      let now = ContinuousClock.now
      requests.withLock { all in
        var keep: [Request] = []
        keep.reserveCapacity(all.count)
        for r in all {
          if r.due <= now { due.append(r) } else { keep.append(r) }
        }
        all = keep
      }
      for r in due {
        if r.pipe.writeByte() { written.add() }
      }
      due.removeAll(keepingCapacity: true)
    }
  }
}
