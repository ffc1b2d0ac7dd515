/// Queues of `UnownedJob` used by the worker pool: a bounded ring (a worker's local queue) and a
/// growable FIFO (the shared injection queue). Neither is synchronised: the owner wraps each in a
/// `Locked` (a pthread mutex), and the locking rule is written where they are stored (`WorkerPool`).

/// A bounded FIFO ring with a LIFO slot for the most recently pushed job.
struct LocalQueue {
  static let capacity = 256
  private var ring: [UnownedJob?]
  private var head = 0
  private(set) var count = 0
  /// The most recent job pushed by the owning worker: run next, for locality (stolen only from
  /// behind a long job: `WorkerPool.lifoStealNanos`).
  var lifo: UnownedJob?
  /// Spawn requests the owning worker took and has not created yet (see `WorkerPool`).
  var spawns = SpawnBatch()

  init() { ring = Array(repeating: nil, count: Self.capacity) }

  var isEmpty: Bool { count == 0 && lifo == nil }

  /// Pushes to the back of the ring; returns false when full.
  mutating func pushBack(_ job: UnownedJob) -> Bool {
    if count == Self.capacity { return false }
    ring[(head + count) & (Self.capacity - 1)] = job
    count += 1
    return true
  }

  mutating func popFront() -> UnownedJob? {
    if count == 0 { return nil }
    let job = ring[head]
    ring[head] = nil
    head = (head + 1) & (Self.capacity - 1)
    count -= 1
    return job
  }

  /// Removes up to `n` jobs from the front (oldest first), appending them to `out`.
  mutating func takeFront(_ n: Int, into out: inout [UnownedJob]) {
    var left = min(n, count)
    while left > 0, let job = popFront() {
      out.append(job)
      left -= 1
    }
  }
}

/// A growable FIFO ring of jobs.
typealias JobDeque = RingDeque<UnownedJob>

/// A growable FIFO ring (power-of-two capacity). It gives its storage back when a burst has
/// drained: once empty, a ring grown past `retainedCapacity` starts again at
/// `initialCapacity`, so a queue that once held a million requests does not keep their 16 MB
/// for the life of the manager.
struct RingDeque<Element> {
  /// The capacity of a new (or released) ring.
  static var initialCapacity: Int { 64 }
  /// The largest capacity an empty ring keeps (as `TimerHeap.retainedSlots`).
  static var retainedCapacity: Int { 4096 }

  private var ring: [Element?] = Array(repeating: nil, count: Self.initialCapacity)
  private var head = 0
  private(set) var count = 0

  var isEmpty: Bool { count == 0 }

  /// Slots allocated.
  var capacity: Int { ring.count }

  mutating func pushBack(_ job: Element) {
    if count == ring.count { grow() }
    ring[(head + count) & (ring.count - 1)] = job
    count += 1
  }

  mutating func popFront() -> Element? {
    if count == 0 { return nil }
    let job = ring[head]
    ring[head] = nil
    head = (head + 1) & (ring.count - 1)
    count -= 1
    if count == 0 && ring.count > Self.retainedCapacity {
      ring = Array(repeating: nil, count: Self.initialCapacity)
      head = 0
    }
    return job
  }

  private mutating func grow() {
    var bigger: [Element?] = Array(repeating: nil, count: ring.count * 2)
    for i in 0..<count { bigger[i] = ring[(head + i) & (ring.count - 1)] }
    ring = bigger
    head = 0
  }
}

extension Array {
  /// Empties a scratch buffer, keeping its storage unless a burst grew it past
  /// `RingDeque.retainedCapacity` elements (then the storage is freed, as a drained ring's is).
  @inline(__always)
  mutating func removeAllRetainingSmallStorage() {
    removeAll(keepingCapacity: capacity <= RingDeque<Element>.retainedCapacity)
  }
}
