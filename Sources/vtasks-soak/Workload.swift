/// The mixed load: what a submitter thread, a shared task, a dedicated task or a task on Swift's
/// global executor does with the manager of the current epoch, and how each outcome is booked.
///
/// Every closure handed to the manager captures a `Payload` (counted while alive, checked for
/// exactly-once on release) and the `Epoch` it was submitted to (which keeps that manager alive
/// while the work runs: an executor preference does not own its executor). Functions here run on
/// any thread; `Site` says where, because `spawnAndBlockOn` on a worker must throw `.unsupported`.
#if canImport(Glibc)
  import Glibc
#endif
import VirtualTasks

enum Site: Sendable, Equatable {
  /// A plain OS thread of the soak.
  case outside
  /// A worker of the manager (a `taskShared` body or one of its structured children).
  case worker
  /// A blocking-pool thread of the manager (a `taskDedicated` body).
  case blocking
}

extension Soak {
  // MARK: submitters

  /// The loop of one submitter thread: random work on whatever manager is current, as fast as the
  /// in-flight cap allows, until the driver says stop (so it keeps racing every shutdown).
  func submitterLoop(index: Int) {
    var rng = SplitMix64(seed: options.seed ^ (UInt64(index + 1) &* 0xA24B_AED4_963E_E407))
    while !stopSubmitters.load(ordering: .acquiring) {
      if Payload.live.load(ordering: .relaxed) > options.maxInFlight {
        threadSleep(milliseconds: 0.2)
        continue
      }
      guard let e = currentEpoch() else {
        threadSleep(milliseconds: 0.2)
        continue
      }
      // Keep racing a shutdown, but leave the teardown some CPU on a small machine.
      if e.shutdownStarted { threadSleep(milliseconds: 0.05) }
      let seed = rng.fork()
      switch rng.below(100) {
      case 0..<36: submitShared(e, seed: seed, depth: 0)
      case 36..<60: submitDedicated(e, seed: seed, depth: 0)
      case 60..<70: submitGlobal(e, seed: seed)
      case 70..<76: submitPreferred(e, seed: seed)
      case 76..<81: blockOn(e, seed: seed, site: .outside)
      default:
        // A burst of small shared tasks, to fill queues and make stealing happen.
        for _ in 0..<16 { submitShared(e, seed: rng.fork(), depth: 1) }
      }
    }
  }

  // MARK: submissions

  func submitShared(_ e: Epoch, seed: UInt64, depth: Int) {
    let l = ledger.shared
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    do throws(WasiThreadError) {
      try e.manager.taskShared { [self] in
        p.ran()
        await self.sharedBody(e, seed: seed, depth: depth)
        l.finished.add()
      }
      p.settle(.accepted)
      l.accepted.add()
    } catch {
      p.settle(.rejected)
      l.reject(error, epoch: e, notes: ledger.notes)
    }
  }

  /// A shared task that asks its own manager to shut down: it must return at once, not wait for
  /// itself (booked as a shared task).
  func submitInsideShutdown(_ e: Epoch) {
    let l = ledger.shared
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    do throws(WasiThreadError) {
      try e.manager.taskShared {
        p.ran()
        await e.manager.shutdownGracefully()
        l.finished.add()
      }
      p.settle(.accepted)
      l.accepted.add()
    } catch {
      p.settle(.rejected)
      l.reject(error, epoch: e, notes: ledger.notes)
    }
  }

  func submitDedicated(_ e: Epoch, seed: UInt64, depth: Int) {
    let l = ledger.dedicated
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    do throws(WasiThreadError) {
      try e.manager.taskDedicated { [self] in
        p.ran()
        self.dedicatedBody(e, seed: seed, depth: depth)
        l.finished.add()
      }
      p.settle(.accepted)
      l.accepted.add()
    } catch {
      p.settle(.rejected)
      l.reject(error, epoch: e, notes: ledger.notes)
    }
  }

  /// A task preferring the manager as its executor without going through `taskShared`: shutdown
  /// does not wait for it, so its later jobs must still run (on Swift's global executor).
  func submitPreferred(_ e: Epoch, seed: UInt64) {
    let l = ledger.preferred
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    Task(executorPreference: e.manager) { [self] in
      p.ran()
      await self.asyncOp(e, seed: seed)
      l.finished.add()
    }
    p.settle(.accepted)
    l.accepted.add()
  }

  /// A task on Swift's global executor using the manager from outside (sleeps, waits, spawnAwait
  /// "from no executor context of ours").
  func submitGlobal(_ e: Epoch, seed: UInt64) {
    let l = ledger.detached
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    Task.detached { [self] in
      p.ran()
      await self.asyncOp(e, seed: seed)
      l.finished.add()
    }
    p.settle(.accepted)
    l.accepted.add()
  }

  /// `spawnAndBlockOn` from `site`: on a worker it must throw `.unsupported` at once.
  func blockOn(_ e: Epoch, seed: UInt64, site: Site) {
    var rng = SplitMix64(seed: seed)
    let l = ledger.spawnAndBlockOn
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    let id = p.id
    let nap: Duration = rng.chance(0.5) ? .zero : .microseconds(rng.below(2000))
    do throws(WasiThreadError) {
      let value = try e.manager.spawnAndBlockOn { [self] in
        p.ran()
        if nap > .zero { await self.sleep(e, nap) }
        return id &* 7
      }
      p.settle(.accepted)
      l.accepted.add()
      l.finished.add()
      if value != id &* 7 {
        l.violations.add()
        ledger.notes.add("spawnAndBlockOn: payload \(id) returned \(value)")
      }
      if site == .worker {
        l.violations.add()
        ledger.notes.add("spawnAndBlockOn on a worker blocked it instead of throwing .unsupported")
      }
    } catch {
      if error == .unsupported {
        p.settle(.unsupported)
        l.unsupported.add()
        if site != .worker {
          l.violations.add()
          ledger.notes.add("spawnAndBlockOn: .unsupported on a \(site) thread")
        }
      } else {
        p.settle(.rejected)
        l.reject(error, epoch: e, notes: ledger.notes)
      }
    }
  }

  // MARK: bodies

  /// The body of a shared task (runs on a worker).
  func sharedBody(_ e: Epoch, seed: UInt64, depth: Int) async {
    var rng = SplitMix64(seed: seed)
    if depth > 0 {
      // Burst and nested tasks stay small.
      if rng.chance(0.5) { _ = spin(100 + rng.below(500), seed: seed) } else { await sleep(e, .zero) }
      return
    }
    switch rng.below(100) {
    case 0..<12:
      _ = spin(200 + rng.below(3000), seed: seed)
    case 12..<22:
      for _ in 0...rng.below(3) { await sleep(e, .zero) }
    case 22..<36:
      await sleep(e, .microseconds(rng.below(20_000)))
    case 36..<46:
      await cancelledSleep(e, seed: rng.fork())
    case 46..<60:
      await readinessOp(e, seed: rng.fork())
    case 60..<70:
      await spawnAwaitOp(e, seed: rng.fork())
    case 70..<78:
      let d = Duration.microseconds(rng.below(5000))
      let s = rng.fork()
      async let a: Void = sleep(e, d)
      async let b: Void = spawnAwaitOp(e, seed: s)
      _ = await (a, b)
    case 78..<84:
      blockOn(e, seed: rng.fork(), site: .worker)
    case 84..<92:
      submitShared(e, seed: rng.fork(), depth: depth + 1)
      submitDedicated(e, seed: rng.fork(), depth: depth + 1)
    default:
      let n = 2 + rng.below(4)
      let seeds = (0..<n).map { _ in rng.fork() }
      await withTaskGroup(of: Void.self) { g in
        for s in seeds { g.addTask { await self.asyncOp(e, seed: s) } }
      }
    }
  }

  /// The body of a dedicated task (runs on a blocking-pool thread; may block).
  func dedicatedBody(_ e: Epoch, seed: UInt64, depth: Int) {
    var rng = SplitMix64(seed: seed)
    switch rng.below(100) {
    case 0..<30:
      break
    case 30..<55:
      threadSleep(milliseconds: Double(rng.below(1500)) / 1000)
    case 55..<70:
      _ = spin(500 + rng.below(5000), seed: seed)
    case 70..<85:
      blockOn(e, seed: rng.fork(), site: .blocking)
    default:
      if depth == 0 {
        submitShared(e, seed: rng.fork(), depth: depth + 1)
        submitDedicated(e, seed: rng.fork(), depth: depth + 1)
      }
    }
  }

  /// Something async that is safe on any executor (no `spawnAndBlockOn`).
  func asyncOp(_ e: Epoch, seed: UInt64) async {
    var rng = SplitMix64(seed: seed)
    switch rng.below(100) {
    case 0..<30: await sleep(e, .microseconds(rng.below(10_000)))
    case 30..<45: await cancelledSleep(e, seed: rng.fork())
    case 45..<70: await readinessOp(e, seed: rng.fork())
    case 70..<90: await spawnAwaitOp(e, seed: rng.fork())
    default: await sleep(e, .zero)
    }
  }

  // MARK: sleeps

  /// One booked `sleepNow`.
  func sleep(_ e: Epoch, _ d: Duration) async {
    let l = ledger.sleep
    l.started.add()
    let start = ContinuousClock.now
    await e.manager.sleepNow(d)
    let elapsed = start.duration(to: .now)
    if elapsed >= d {
      l.onTime.add()
      if !Task.isCancelled && d < .seconds(1000) {
        l.maxLateMicros.max(Int(milliseconds(elapsed - d) * 1000))
      }
    } else if Task.isCancelled {
      l.cancelled.add()
    } else if e.shutdownStarted {
      l.atShutdown.add()
    } else {
      l.early.add()
      ledger.notes.add("sleep: \(d) returned after \(elapsed), not cancelled, manager \(e.number) running")
    }
    l.ended.add()
  }

  /// A long sleep cancelled part-way (or racing its own expiry).
  func cancelledSleep(_ e: Epoch, seed: UInt64) async {
    var rng = SplitMix64(seed: seed)
    let long: Duration
    let cancelAfter: Duration
    switch rng.below(4) {
    case 0:
      long = .milliseconds(200)
      cancelAfter = .microseconds(rng.below(3000))
    case 1:
      long = .seconds(10)
      cancelAfter = .microseconds(rng.below(3000))
    case 2:
      long = .seconds(Int64.max)  // must not overflow anywhere
      cancelAfter = .microseconds(rng.below(1000))
    default:
      // Cancellation racing expiry.
      let d = 300 + rng.below(1500)
      long = .microseconds(d)
      cancelAfter = .microseconds(d - 200 + rng.below(400))
    }
    await withTaskGroup(of: Void.self) { g in
      g.addTask { await self.sleep(e, long) }
      await self.sleep(e, cancelAfter)
      g.cancelAll()
    }
  }

  // MARK: readiness

  /// A readiness wait on a fresh pipe, in one of five shapes.
  func readinessOp(_ e: Epoch, seed: UInt64) async {
    var rng = SplitMix64(seed: seed)
    guard Pipe.live.load(ordering: .relaxed) < 256, let pipe = Pipe.make() else {
      await sleep(e, .zero)
      return
    }
    switch rng.below(5) {
    case 0:
      // Written later by the writer thread; nothing cancels it.
      writer.write(pipe, after: .microseconds(rng.below(3000)))
      await waitReady(e, pipe, writable: false, single: true, shape: 0)
    case 1:
      // The write races the cancellation.
      writer.write(pipe, after: .microseconds(rng.below(3000)))
      let cancelAfter = Duration.microseconds(rng.below(3000))
      await withTaskGroup(of: Void.self) { g in
        g.addTask { await self.waitReady(e, pipe, writable: false, single: true, shape: 1) }
        await self.sleep(e, cancelAfter)
        g.cancelAll()
      }
    case 2:
      // Never written: only cancellation (or shutdown) ends it.
      let cancelAfter = Duration.microseconds(rng.below(2000))
      await withTaskGroup(of: Void.self) { g in
        g.addTask { await self.waitReady(e, pipe, writable: false, single: true, shape: 2) }
        await self.sleep(e, cancelAfter)
        g.cancelAll()
      }
    case 3:
      // An empty pipe is writable at once.
      await waitReady(e, pipe, writable: true, single: true, shape: 3)
    default:
      // Two waiters on one fd: one is cancelled, the other ends with the write.
      let cancelAfter = Duration.microseconds(rng.below(1500))
      let writeAfter = Duration.microseconds(500 + rng.below(2500))
      await withTaskGroup(of: Void.self) { g in
        g.addTask { await self.waitReady(e, pipe, writable: false, single: false, shape: 4) }
        g.addTask {
          await withTaskGroup(of: Void.self) { inner in
            inner.addTask { await self.waitReady(e, pipe, writable: false, single: false, shape: 4) }
            await self.sleep(e, cancelAfter)
            inner.cancelAll()
          }
        }
        writer.write(pipe, after: writeAfter)
      }
    }
  }

  /// One booked readiness wait.
  func waitReady(_ e: Epoch, _ pipe: Pipe, writable: Bool, single: Bool, shape: Int) async {
    let l = ledger.readiness
    l.started.add()
    do {
      if writable {
        try await e.manager.writable(pipe.writeFD)
      } else {
        try await e.manager.readable(pipe.readFD)
      }
      l.ready.add()
      if single && !writable && !pipe.readByte() {
        l.spurious.add()
        ledger.notes.add(
          "readiness: fd \(pipe.readFD) reported readable with nothing to read (shape \(shape))")
      }
    } catch is CancellationError {
      l.cancelled.add()
      if !Task.isCancelled {
        l.violations.add()
        ledger.notes.add("readiness: CancellationError in a task nobody cancelled")
      }
    } catch let error as WasiThreadError where error == .shutDown {
      l.shutDown.add()
      if !e.shutdownStarted {
        l.violations.add()
        ledger.notes.add("readiness: .shutDown from manager \(e.number) before its shutdown began")
      }
    } catch {
      l.otherError.add()
      ledger.notes.add("readiness: unexpected \(error)")
    }
    l.ended.add()
  }

  // MARK: spawnAwait

  func spawnAwaitOp(_ e: Epoch, seed: UInt64) async {
    var rng = SplitMix64(seed: seed)
    let l = ledger.spawnAwait
    l.submitted.add()
    let p = Payload(l, ledger.notes)
    let id = p.id
    let block = rng.chance(0.3) ? Double(rng.below(1000)) / 1000 : 0
    do throws(WasiThreadError) {
      let value = try await e.manager.spawnAwait {
        p.ran()
        threadSleep(milliseconds: block)
        return id &* 3
      }
      p.settle(.accepted)
      l.accepted.add()
      l.finished.add()
      if value != id &* 3 {
        l.violations.add()
        ledger.notes.add("spawnAwait: payload \(id) returned \(value)")
      }
    } catch {
      p.settle(.rejected)
      l.reject(error, epoch: e, notes: ledger.notes)
    }
  }
}
