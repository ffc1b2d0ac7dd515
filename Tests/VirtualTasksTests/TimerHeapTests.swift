import Testing

@testable import VirtualTasks

/// The timer heap against a plain sorted model: random inserts (with many equal deadlines),
/// cancellations at random positions and partial pops, checked step by step.
@Suite("Timer heap: order and cancellation against a model")
struct TimerHeapTests {
  @Test func randomInsertsCancelsAndPops_matchASortedModel() {
    var heap = TimerHeap<Int>()
    // The model: (deadline, submission number, id) of every live timer.
    var live: [(deadline: Int64, order: Int, id: Int, token: TimerToken)] = []
    var seed: UInt64 = 7
    func next(_ bound: Int) -> Int {
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Int((seed >> 33) % UInt64(bound))
    }
    var submitted = 0
    var now: Int64 = 0
    var lastCancelled: TimerToken?
    for step in 0..<40_000 {
      switch next(10) {
      case 0..<5:
        let deadline = now + Int64(next(50))  // few distinct deadlines: many ties
        let token = heap.insert(deadline: deadline)
        let attached = heap.attach(token, submitted)
        #expect(attached)
        live.append((deadline, submitted, submitted, token))
        submitted += 1
        // A cancelled timer's slot is reused at once, its tombstone possibly still in the heap:
        // the old token must not reach the new timer.
        if let stale = lastCancelled {
          #expect(!heap.contains(stale) && !heap.remove(stale).found, "step \(step)")
        }
      case 5..<8:
        guard !live.isEmpty else { continue }
        let victim = live.remove(at: next(live.count))
        let removed = heap.remove(victim.token)
        #expect(removed.found && removed.payload == victim.id, "step \(step)")
        let again = heap.remove(victim.token)
        #expect(!again.found, "a cancelled token is stale")
        lastCancelled = victim.token
      default:
        now += Int64(next(20))
        var fired: [Int?] = []
        heap.popExpired(now: now, into: &fired)
        let due = live.filter { $0.deadline <= now }.sorted {
          ($0.deadline, $0.order) < ($1.deadline, $1.order)
        }
        live.removeAll { $0.deadline <= now }
        #expect(fired.map { $0! } == due.map(\.id), "step \(step)")
      }
      #expect(heap.count == live.count)
      // A lower bound (a cancelled top is still there), never later than the earliest live one.
      if let earliest = live.map(\.deadline).min() {
        #expect(heap.earliestDeadline! <= earliest, "step \(step)")
      } else {
        #expect(heap.earliestDeadline == nil, "step \(step): no live timer, no entry")
      }
    }
    var rest: [Int?] = []
    heap.popExpired(now: .max, into: &rest)
    #expect(Set(rest.map { $0! }) == Set(live.map(\.id)))
    #expect(heap.isEmpty)
  }

  @Test func massCancellation_keepsTombstonesWithinTheirRatio_andOrderSurvivesPurges() {
    var heap = TimerHeap<Int>()
    let n = 20_000
    var tokens: [TimerToken] = []
    for i in 0..<n {
      let t = heap.insert(deadline: Int64((i &* 7919) % 5000))  // shuffled, with ties
      _ = heap.attach(t, i)
      tokens.append(t)
    }
    // Cancel all but every 10th, in submission order (mostly below the top: tombstones).
    var kept: [Int] = []
    var cancelled = 0
    for i in 0..<n {
      if i % 10 == 0 {
        kept.append(i)
        continue
      }
      let removed = heap.remove(tokens[i])
      cancelled += 1
      #expect(removed.found && removed.payload == i)
      #expect(!heap.contains(tokens[i]))
      #expect(!heap.remove(tokens[i]).found, "a cancelled token is stale")
      #expect(heap.count == n - cancelled)
      #expect(
        heap.storedEntries
          <= (TimerHeap<Int>.tombstonesPerLiveTimer + 1) * heap.count + TimerHeap<Int>.tombstoneSlack + 1)
    }
    #expect(heap.count == kept.count)
    var fired: [Int?] = []
    heap.popExpired(now: .max, into: &fired)
    let expected = kept.sorted { (($0 &* 7919) % 5000, $0) < (($1 &* 7919) % 5000, $1) }
    #expect(fired.map { $0! } == expected)
    #expect(heap.isEmpty && heap.storedEntries == 0)
  }

  @Test func emptiedAfterABurst_releasesItsStorage_andOldTokensStayStale() {
    var heap = TimerHeap<Int>()
    let burst = (0..<(TimerHeap<Int>.retainedSlots + 100)).map { heap.insert(deadline: Int64($0)) }
    for t in burst { _ = heap.remove(t) }
    #expect(heap.isEmpty)
    // New timers reuse slot numbers from zero; none of the old tokens may touch them.
    let fresh = (0..<10).map { heap.insert(deadline: Int64(1000 + $0)) }
    for t in burst { #expect(!heap.contains(t)) }
    for t in burst.prefix(10) {
      let removed = heap.remove(t)
      #expect(!removed.found)
    }
    #expect(heap.count == 10)
    for t in fresh { #expect(heap.contains(t)) }
  }
}
