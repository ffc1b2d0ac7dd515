/// Fd readiness for async tasks: `readable(fd)` / `writable(fd)`, one-shot and cancellable.
///
/// Each fd with waiters is registered once in the reactor's epoll set with `EPOLLONESHOT` and the
/// union of its waiters' interests; the epoll data is `generation << 32 | fd` with a generation
/// >= 1 per registration (0 and 1 tag the eventfd and the timerfd), so an event fetched for an
/// earlier registration of a reused fd number never wakes a newer wait. When the fd fires, the matching waiters are resumed and the fd is re-armed for the
/// rest, or removed when none remain. Several tasks may wait on the same fd at once.
///
/// Documented outcomes:
/// - `EPOLLHUP` / `EPOLLERR` count as readiness for every waiter: the next read or write reports
///   the end of file or the error, as with tokio and SwiftNIO.
/// - Waiting on an fd that is not open throws `.systemCallFailed(name: "epoll_ctl", errno: EBADF)`;
///   on an fd epoll cannot watch (a regular file) `... errno: EPERM`.
/// - Closing an fd while a task waits on it: the kernel silently drops a closed fd from the epoll
///   set, so that wait only ends by cancellation or by shutdown (`.shutDown`). Cancel first, then
///   close.
/// - Cancellation throws `CancellationError` and deregisters at once; shutdown throws `.shutDown`.
#if canImport(Glibc)
  import Glibc
#endif
import CShims

extension Reactor {
  /// Waits until `fd` is ready for `events` (VT_EPOLLIN or VT_EPOLLOUT).
  func wait(fd: Int32, events: UInt32) async throws {
    let id = try register(fd: fd, events: events)
    try await withTaskCancellationHandler {
      try await withReadinessContinuation { continuation in
        let early: Result<Void, any Error>? = state.withLock { s in
          if let r = s.early.removeValue(forKey: id) { return r }
          if let i = s.fds[fd]?.waiters.firstIndex(where: { $0.id == id }) {
            // In place (the dictionary's modify accessor): copying the record out and back would
            // copy its waiters array, an allocation per wait.
            s.fds[fd]!.waiters[i].continuation = continuation
            return nil
          }
          return .failure(WasiThreadError.shutDown)
        }
        if let early { continuation.resume(with: early) }
      }
    } onCancel: {
      self.cancelWait(fd: fd, id: id)
    }
  }

  @inline(__always)
  static func eventData(fd: Int32, generation: UInt32) -> UInt64 {
    UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
  }

  private func register(fd: Int32, events: UInt32) throws(WasiThreadError) -> UInt64 {
    if fd < 0 { throw .systemCallFailed(name: "epoll_ctl", errno: EBADF) }
    let result: Result<UInt64, WasiThreadError> = state.withLock { s in
      if s.closed { return .failure(.shutDown) }
      s.nextWaiterID &+= 1
      let id = s.nextWaiterID
      var record = s.fds[fd] ?? FdRecord()
      let isNew = record.waiters.isEmpty
      if isNew {
        s.nextGeneration &+= 1
        if s.nextGeneration == 0 { s.nextGeneration = 1 }
        record.generation = s.nextGeneration
      }
      record.waiters.append(FdWaiter(id: id, events: events, continuation: nil))
      let interest = record.interest | UInt32(VT_EPOLLONESHOT)
      let data = Self.eventData(fd: fd, generation: record.generation)
      var r: Int32
      if isNew {
        r = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_ADD), fd, interest, data)
        if r == -EEXIST { r = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_MOD), fd, interest, data) }
      } else {
        r = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_MOD), fd, interest, data)
        if r == -ENOENT { r = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_ADD), fd, interest, data) }
      }
      if r < 0 {
        if !isNew {
          record.waiters.removeLast()
          s.fds[fd] = record
        }
        return .failure(.systemCallFailed(name: "epoll_ctl", errno: -r))
      }
      s.fds[fd] = record
      return .success(id)
    }
    return try result.get()
  }

  /// Called by the reactor thread for an event on `fd`: collects the waiters to resume.
  func handleReadiness(
    fd: Int32, generation: UInt32, events: UInt32,
    into ready: inout [(ReadinessContinuation, Result<Void, any Error>)]
  ) {
    let hangup = events & UInt32(VT_EPOLLERR | VT_EPOLLHUP) != 0
    state.withLock { s in
      // A stale event (its registration was removed, the number reused) wakes nobody.
      guard var record = s.fds[fd], record.generation == generation else { return }
      var remaining: [FdWaiter] = []
      for w in record.waiters {
        if hangup || (w.events & events) != 0 {
          if let c = w.continuation { ready.append((c, .success(()))) } else { s.early[w.id] = .success(()) }
        } else {
          remaining.append(w)
        }
      }
      record.waiters = remaining
      rearm(&s, fd: fd, record: record, into: &ready)
    }
  }

  private func cancelWait(fd: Int32, id: UInt64) {
    let continuation: ReadinessContinuation? = state.withLock { s in
      guard var record = s.fds[fd], let i = record.waiters.firstIndex(where: { $0.id == id }) else {
        return nil
      }
      let w = record.waiters.remove(at: i)
      var ignored: [(ReadinessContinuation, Result<Void, any Error>)] = []
      rearm(&s, fd: fd, record: record, into: &ignored)
      for (c, r) in ignored { c.resume(with: r) }  // only non-empty when re-arming failed
      if w.continuation == nil { s.early[id] = .failure(CancellationError()) }
      return w.continuation
    }
    continuation?.resume(throwing: CancellationError())
  }

  /// Re-arms (one-shot) for the remaining waiters, or removes the fd (lock held).
  private func rearm(
    _ s: inout State, fd: Int32, record: FdRecord,
    into ready: inout [(ReadinessContinuation, Result<Void, any Error>)]
  ) {
    if record.waiters.isEmpty {
      _ = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_DEL), fd, 0, 0)
      s.fds[fd] = nil
      return
    }
    let data = Self.eventData(fd: fd, generation: record.generation)
    let r = vt_epoll_ctl(epollFD, Int32(VT_EPOLL_CTL_MOD), fd, record.interest | UInt32(VT_EPOLLONESHOT), data)
    if r < 0 {
      // The fd was closed under us: end the remaining waits with the error.
      let error = WasiThreadError.systemCallFailed(name: "epoll_ctl", errno: -r)
      for w in record.waiters {
        if let c = w.continuation { ready.append((c, .failure(error))) } else { s.early[w.id] = .failure(error) }
      }
      s.fds[fd] = nil
      return
    }
    s.fds[fd] = record
  }
}
