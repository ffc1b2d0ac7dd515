/// The blocking pool's FIFO of closures: unbounded, in segments of `segmentSize` slots, with one
/// lock for the producers (the tail) and another for the consumers (the head). A submitter never
/// waits for a pool thread taking work, nor a pool thread for a submitter: with one lock for both,
/// as before, W1 spent about 30% of its CPU in that lock (the submitter and both threads), and a
/// preempted holder on 2 vCPUs stalled the other two. This is the two-lock queue of Michael and
/// Scott, with a segment of slots per node instead of one node (one malloc) per closure. Up to
/// `maxSpareSegments` drained segments are kept as spares for the next links, so a stream that
/// never holds more than that many segments at once mallocs nothing once it has reached its
/// peak: `bench-check`'s `taskDedicated` budget is 0 mallocs per 1000. (With one spare, a sample
/// whose 1000 closures outran the two pool threads on a noisy host held four segments and
/// allocated 6, failing that budget.) They cost `maxSpareSegments` times 4 KB per manager.
///
/// Publication: a producer writes its slot and, when that filled the segment, links a new one,
/// then stores `enqueued + 1` (sequentially consistent: it is one side of the blocking pool's
/// idle hand-shake). A consumer loads `enqueued` (acquire) before it reads a slot or a `next`
/// link, so it never reads a slot or link that is not yet written. `dequeued` is stored only by a
/// consumer holding the head lock. `count` needs no lock: exact for a caller that holds both
/// locks, a snapshot otherwise.
///
/// `close()` (under the tail lock) makes every later `push` fail: whatever a consumer finds after
/// it has seen `isClosed` is everything that will ever be pushed.
///
/// Threads: any thread may call any method.
import Synchronization

final class WorkQueue: @unchecked Sendable {  // slots and links: see "Publication"; ends: their locks
  typealias Work = @Sendable () -> Void

  static let segmentSize = 256
  /// Drained segments kept for reuse (see above).
  static let maxSpareSegments = 4

  /// A closure wrapped in a struct: a closure stored in generic memory directly is kept at maximal
  /// abstraction, which boxes it (a malloc per push and another per pop).
  private struct Item {
    var work: Work
  }

  private final class Segment: @unchecked Sendable {  // `next` is written before the release of `enqueued` that makes it readable
    /// Slots [0, filled) are written by producers; each is moved out by exactly one consumer.
    let slots = UnsafeMutablePointer<Item>.allocate(capacity: WorkQueue.segmentSize)
    @exclusivity(unchecked) var next: Segment?
    deinit { slots.deallocate() }  // every slot was moved out before the segment is dropped
  }

  private struct Tail {
    var segment: Segment
    var index = 0
    var enqueued = 0
    var closed = false
    var segmentsLinked = 1
    var segmentsAllocated = 1
  }

  private struct Head {
    var segment: Segment
    var index = 0
    var dequeued = 0
    var segmentsDropped = 0
  }

  private let tail: Locked<Tail>
  private let head: Locked<Head>
  /// Closures pushed so far, stored under the tail lock after the slot is written.
  private let enqueued = Atomic<Int>(0)
  /// Closures popped so far, stored under the head lock.
  private let dequeued = Atomic<Int>(0)
  private let closedFlag = Atomic<Bool>(false)
  /// Drained segments (no slot initialized, `next` nil) for the tail's next links, at most
  /// `maxSpareSegments` (the array's storage is reserved here: no malloc later). Its own lock:
  /// touched once per `segmentSize` closures by each end.
  private let spares: Locked<[Segment]>

  init() {
    var storage: [Segment] = []
    storage.reserveCapacity(Self.maxSpareSegments)
    spares = Locked(storage)
    let first = Segment()
    tail = Locked(Tail(segment: first))
    head = Locked(Head(segment: first))
  }

  deinit {
    // Whatever is still queued (none after a shutdown) is released here, one segment at a time:
    // dropping a long chain at once would recurse once per segment.
    while pop() != nil {}
  }

  /// Queues `work` last. False, with `work` not kept, once `close()` ran.
  func push(_ work: @escaping Work) -> Bool {
    tail.withLock { t in
      if t.closed { return false }
      (t.segment.slots + t.index).initialize(to: Item(work: work))
      t.index += 1
      if t.index == Self.segmentSize {
        let reused = spares.withLock { $0.popLast() }
        let next: Segment
        if let reused {
          next = reused
        } else {
          next = Segment()
          t.segmentsAllocated += 1
        }
        t.segment.next = next
        t.segment = next
        t.index = 0
        t.segmentsLinked += 1
      }
      t.enqueued += 1
      enqueued.store(t.enqueued, ordering: .sequentiallyConsistent)
      return true
    }
  }

  /// The oldest queued closure, or nil when none is queued.
  func pop() -> Work? {
    // Cheap early out without the lock: an idle pool thread polls this.
    if dequeued.load(ordering: .relaxed) == enqueued.load(ordering: .relaxed) { return nil }
    // The lock's closure returns the `Item`, not the closure: a function type returned through the
    // generic `withLock` is reabstracted there and back, a thunk context (a malloc) each way.
    let item = head.withLock { h -> Item? in
      guard h.dequeued < enqueued.load(ordering: .acquiring) else { return nil }
      let item = (h.segment.slots + h.index).move()
      h.index += 1
      if h.index == Self.segmentSize {
        // The producer linked the next segment when it filled this one, before publishing. The
        // drained one is no longer the producer's (it moved on when it filled it).
        let drained = h.segment
        h.segment = drained.next!
        drained.next = nil
        h.index = 0
        h.segmentsDropped += 1
        spares.withLock { s in
          if s.count < Self.maxSpareSegments { s.append(drained) }
        }
      }
      h.dequeued += 1
      dequeued.store(h.dequeued, ordering: .releasing)
      return item
    }
    return item?.work
  }

  /// Queued closures (see "Publication" for how exact). The load of `enqueued` is sequentially
  /// consistent: the other side of the idle hand-shake.
  var count: Int {
    let d = dequeued.load(ordering: .relaxed)
    return max(0, enqueued.load(ordering: .sequentiallyConsistent) - d)
  }

  /// Segments linked and not yet dropped (1 when drained: a burst's storage goes as it drains,
  /// but for the spares).
  var segmentsHeld: Int {
    tail.withLock { $0.segmentsLinked } - head.withLock { $0.segmentsDropped }
  }

  /// Segments allocated so far, the first one included (a reused spare is not counted again).
  var segmentsAllocated: Int { tail.withLock { $0.segmentsAllocated } }

  /// Makes every later `push` fail. Idempotent.
  func close() {
    tail.withLock { t in
      t.closed = true
      closedFlag.store(true, ordering: .releasing)
    }
  }

  /// True once `close()` ran. A consumer that sees it and then finds the queue empty has seen the
  /// last closure.
  var isClosed: Bool { closedFlag.load(ordering: .acquiring) }
}
