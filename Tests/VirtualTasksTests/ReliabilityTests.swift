import CShims
import Foundation
import Synchronization
import Testing

@testable import VirtualTasks

/// The promises of DESIGN.md section 7, each proved with a ledger.
@Suite("Reliability: nothing lost under shutdown, faults and bad input")
struct ReliabilityTests {
  @Test func shutdownRacingFourSubmittingThreads_everySubmitThrewOrRanExactlyOnce() async throws {
    let live = Counter()
    var generator = SystemRandomNumberGenerator()
    var totals = (accepted: 0, rejected: 0, ran: 0)
    for moment in 0..<50 {
      let mgr = try makeManager(workers: 2, maxBlocking: 4, prefix: "race\(moment)")
      let accepted = Counter()
      let rejected = Counter()
      let ran = Counter()
      let perThread = 500  // 4 threads x 500 x 50 moments = 100k submits
      let submitted = Countdown(4)
      for t in 0..<4 {
        Thread.detachNewThread {
          for i in 0..<perThread {
            let payload = Payload(live)
            do throws(WasiThreadError) {
              if (i + t) % 2 == 0 {
                try mgr.taskShared { _ = payload; ran.add() }
              } else {
                try mgr.taskDedicated { _ = payload; ran.add() }
              }
              accepted.add()
            } catch {
              if error == .shutDown { rejected.add() }
            }
          }
          submitted.tick()
        }
      }
      let delay = UInt32.random(in: 0...3000, using: &generator)
      usleep(delay)
      await mgr.shutdownGracefully()
      await submitted.wait()
      #expect(accepted.count + rejected.count == 4 * perThread)
      #expect(ran.count == accepted.count, "moment \(moment): ran \(ran.count) accepted \(accepted.count)")
      totals.accepted += accepted.count
      totals.rejected += rejected.count
      totals.ran += ran.count
    }
    #expect(totals.accepted + totals.rejected == 100_000)
    #expect(totals.ran == totals.accepted)
    #expect(await eventually { live.count == 0 }, "every closure released")
  }

  @Test func exhaustedFdTable_initThrowsSystemCallFailed_andLeavesNoFdOpen() async {
    // Each limit lets one more of the reactor's three fds open before EMFILE.
    for extra in 0..<3 {
      await #expect(processExitsWith: .success) { [extra = extra as Int] in
        await warmGlobalPool()
        // New fds take the lowest free numbers: fill the gaps below the highest open fd, so that
        // a limit of "highest + 1 + extra" leaves exactly `extra` fds to open.
        let highest = highestOpenFd()
        while true {
          let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
          if fd < 0 || fd > highest {
            if fd >= 0 { close(fd) }
            break
          }
        }
        let fds = fdCount()
        let before = Set(fdTargets())
        let original = vt_testing_nofile_limit()
        _ = vt_testing_set_nofile_limit(UInt64(highest + 1 + extra))
        var outcome: Result<Void, WasiThreadError> = .success(())
        do throws(WasiThreadError) { _ = try makeManager(workers: 1, prefix: "emfile") } catch { outcome = .failure(error) }
        _ = vt_testing_set_nofile_limit(original)
        switch outcome {
        case .success: require(false, "init succeeded with \(extra) spare fds; highest open fd was \(highest)")
        case .failure(.systemCallFailed(let name, let errno)):
          require(errno == EMFILE, "\(name) failed with errno \(errno), expected EMFILE")
        case .failure(let e): require(false, "unexpected \(e)")
        }
        let after = Set(fdTargets())
        require(
          fdCount() == fds,
          "fds \(fdCount()) vs \(fds) after EMFILE with \(extra) spare: opened \(after.subtracting(before).sorted()), "
            + "closed \(before.subtracting(after).sorted())")
        require(threadsNamed("emfile-") == 0, "no thread left behind")
      }
    }
  }

  @Test func eintrStorm_noErrorNoEarlyWake() async {
    await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      require(vt_testing_install_noop_handler(SIGUSR1) == 0, "sigaction")
      do {
        let mgr = try makeManager(workers: 2, maxBlocking: 8, prefix: "eintr")
        let stop = Atomic<Bool>(false)
        let signals = Counter()
        let hammer = Thread {
          while !stop.load(ordering: .relaxed) {
            signals.add(Int(vt_testing_signal_all_threads(SIGUSR1)))
            usleep(200)
          }
        }
        hammer.start()
        let early = Counter()
        let done = Countdown(1000 + 10_000)
        for i in 0..<1000 {
          try mgr.taskShared {
            let d = Duration.microseconds(500 + (i * 37) % 5000)
            let start = ContinuousClock.now
            await mgr.sleepNow(d)
            if ContinuousClock.now - start < d { early.add() }
            done.tick()
          }
        }
        for i in 0..<10_000 {
          if i % 2 == 0 { try mgr.taskShared { done.tick() } } else { try mgr.taskDedicated { done.tick() } }
        }
        await done.wait()
        stop.store(true, ordering: .relaxed)
        require(early.count == 0, "\(early.count) sleeps woke early")
        require(signals.count > 100, "the storm only sent \(signals.count) signals")
        await mgr.shutdownGracefully()
      } catch {
        require(false, "unexpected \(error)")
      }
    }
  }

  @Test func thousandEqualDeadlines_fireInSubmissionOrder_atTheTimerLevel() {
    var heap = TimerHeap<Int>()
    var tokens: [TimerToken] = []
    for i in 0..<1000 {
      let t = heap.insert(deadline: 5_000)
      _ = heap.attach(t, i)
      tokens.append(t)
    }
    _ = heap.insert(deadline: 4_000)  // an earlier one comes first
    _ = heap.remove(tokens[500])  // a cancelled one never fires
    var fired: [Int?] = []
    heap.popExpired(now: 5_000, into: &fired)
    #expect(fired.count == 1000)
    #expect(fired.first! == nil)
    #expect(Array(fired.dropFirst()).compactMap { $0 } == Array(0..<500) + Array(501..<1000))
    #expect(heap.isEmpty)
    #expect(!heap.contains(tokens[0]), "a fired token is stale")
  }

  @Test func durationConversion_roundsUpAndSaturates() {
    #expect(Duration.zero.saturatingNanoseconds == 0)
    #expect(Duration.seconds(-5).saturatingNanoseconds == 0)
    #expect(Duration.nanoseconds(1).saturatingNanoseconds == 1)
    #expect(Duration(secondsComponent: 0, attosecondsComponent: 1).saturatingNanoseconds == 1, "rounds up")
    #expect(Duration.milliseconds(1).saturatingNanoseconds == 1_000_000)
    #expect(Duration.seconds(Int64.max).saturatingNanoseconds == Int64.max)
    #expect(Duration.seconds(9_223_372_036).saturatingNanoseconds == 9_223_372_036_000_000_000)
    #expect(Duration.seconds(9_223_372_037).saturatingNanoseconds == Int64.max)
  }

  @Test func forkedChild_submitsThrow_andSleepsReturn() async {
    await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
      do {
        let mgr = try makeManager(workers: 1, prefix: "forked")
        // Only the forking thread lives on in the child: a Swift runtime lock or once another
        // thread held at the fork stays held there forever. A CI run hung here, the child
        // spinning in `swift_once` for the metadata of the error it was about to throw. So the
        // parent walks the child's code path first (a shut-down manager throws the same errors,
        // instantiating their metadata), and forks with this manager idle.
        let warm = try makeManager(workers: 1, prefix: "forkwarm")
        await warm.shutdownGracefully()
        do throws(WasiThreadError) { try warm.taskShared {} } catch { require(error == .shutDown, "warm-up") }
        do throws(WasiThreadError) { try warm.taskDedicated {} } catch { require(error == .shutDown, "warm-up") }
        require(eventuallyInChild { mgr.metrics().queuedSharedJobs == 0 }, "idle before fork")
        let pid = vt_testing_fork()
        if pid == 0 {
          // The child: the manager's threads do not exist here.
          var code: Int32 = 0
          do throws(WasiThreadError) { try mgr.taskShared {}; code = 1 } catch { if error != .shutDown { code = 2 } }
          do throws(WasiThreadError) { try mgr.taskDedicated {}; code = 3 } catch { if error != .shutDown { code = 4 } }
          vt_testing_exit(code)
        }
        require(pid > 0, "fork failed")
        let status = vt_testing_wait(pid)
        require(status == 0, "child status \(status)")
        // The parent's manager is unaffected.
        let v = try await mgr.spawnAwait { 11 }
        require(v == 11, "parent works")
        await mgr.shutdownGracefully()
      } catch {
        require(false, "unexpected \(error)")
      }
    }
  }

  @Test func execdChild_seesNoneOfTheManagersFds() async throws {
    let mgr = try makeManager(prefix: "exec")
    let r = mgr.core.reactor
    let fds = [r.epollFD, r.eventFD, r.timerFD]
    #expect(fds.allSatisfy { vt_fd_is_cloexec($0) == 1 })
    let status = fds.withUnsafeBufferPointer { vt_testing_exec_sees_fds($0.baseAddress, Int32($0.count)) }
    #expect(status == 0, "an exec'd child still had a manager fd open")
    // And the probe itself can tell: a non-CLOEXEC fd is seen by the exec'd child.
    var pipe: [Int32] = [0, 0]
    _ = vt_pipe(&pipe)
    _ = fcntl(pipe[0], F_SETFD, 0)
    let leaked = [pipe[0]].withUnsafeBufferPointer { vt_testing_exec_sees_fds($0.baseAddress, 1) }
    #expect(leaked == 1)
    close(pipe[0])
    close(pipe[1])
    await mgr.shutdownGracefully()
  }

  @Test func errorThrownInsideASharedTask_doesNotDisturbThePool() async throws {
    struct Boom: Error {}
    let mgr = try makeManager(workers: 1, prefix: "throws")
    let caught = Counter()
    let done = Countdown(100)
    for _ in 0..<100 {
      try mgr.taskShared {
        do {
          try await withThrowingTaskGroup(of: Void.self) { g in
            g.addTask { throw Boom() }
            g.addTask { await mgr.sleepNow(.milliseconds(1)) }
            try await g.waitForAll()
          }
        } catch { caught.add() }
        done.tick()
      }
    }
    await done.wait()
    #expect(caught.count == 100)
    let after = try await mgr.spawnAwait { 3 }
    #expect(after == 3)
    await mgr.shutdownGracefully()
    #expect(mgr.metrics().completedSharedTasks == 100)
  }

  @Test func trapInsideASharedTask_endsTheProcessWithItsMessage() async throws {
    // Documented outcome: a trap (fatalError, precondition, force-unwrap of nil) in a task is not
    // an error the pool can catch: Swift ends the process, printing the message.
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let mgr = try makeManager(workers: 1, prefix: "trap")
      try mgr.taskShared { fatalError("boom from a shared task") }
      await mgr.sleepNow(.seconds(10))
    }
    let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(stderr.contains("boom from a shared task"))
  }
}

/// The highest fd number open now.
func highestOpenFd() -> Int {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
  return names.compactMap(Int.init).max() ?? 2
}

/// Regressions found by `vtasks-soak`.
@Suite("Soak regressions")
struct SoakRegressionTests {
  @Test func parkAndWakeChurn_neverStrandsQueuedWork_norDriftsTheSearchingCount() async throws {
    // Three plain threads submit small batches and wait for each, pausing so that workers park
    // and are woken over and over. A worker counted twice as searching once drove the count
    // below zero, after which no parked worker was ever woken again (work stayed queued).
    let mgr = try makeManager(workers: 2, prefix: "churn")
    let stalls = Counter()
    let finished = Countdown(3)
    for seed in 0..<3 {
      Thread.detachNewThread {
        var s = UInt32(seed * 7919 + 1)
        let end = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < end {
          s = s &* 1_103_515_245 &+ 12345
          let n = 1 + Int(s >> 16) % 8
          let done = Counter()
          for _ in 0..<n { try? mgr.taskShared { done.add() } }
          let deadline = ContinuousClock.now + .seconds(30)
          while done.count < n {
            if ContinuousClock.now > deadline { stalls.add(); break }
            sched_yield()
          }
          usleep(useconds_t(s >> 20 & 0x3f))
        }
        finished.tick()
      }
    }
    await finished.wait()
    #expect(stalls.count == 0, "a batch stayed queued: \(mgr.metrics())")
    #expect(await eventually { mgr.metrics().queuedSharedJobs == 0 })
    #expect(mgr.core.workers.searchingCount >= 0)
    await mgr.shutdownGracefully()
  }

  @Test func droppingTheManagerFromItsOwnDedicatedTask_stillTearsDownEverything() async throws {
    // The closure held the manager's last reference; releasing it under the blocking pool's
    // lock ran deinit -> close() on the same lock: a self-deadlock that leaked every thread.
    do {
      let mgr = try makeManager(workers: 2, prefix: "dropself")
      let started = Countdown(1)
      try mgr.taskDedicated { [mgr] in
        started.tick()
        usleep(50_000)
        _ = mgr
      }
      await started.wait()
    }
    #expect(await eventually { threadsNamed("dropself-") == 0 }, "threads left: \(threadsNamed("dropself-"))")
  }

  @Test func spawnAwaitHoldingTheLastReference_stillTearsDownEverything() async throws {
    let value: Int
    do {
      let mgr = try makeManager(workers: 1, prefix: "dropawait")
      value = try await mgr.spawnAwait { [mgr] in _ = mgr; return 4 }
    }
    #expect(value == 4)
    #expect(await eventually { threadsNamed("dropawait-") == 0 }, "threads left: \(threadsNamed("dropawait-"))")
  }
}
