/// The reactor's timers: an indexed 4-ary min-heap over a slab of slots.
///
/// O(log n) insert and cancel (each slot knows its heap position), O(1) peek. Ties on the deadline
/// are broken by a submission sequence number, so equal deadlines fire in submission order. Slots
/// are reused through a free list and carry a generation, so a stale token (a sleep that already
/// fired or was cancelled) can never touch a newer timer. Not synchronised: the reactor guards it
/// with its lock.
///
/// Layout, for the cache: each heap entry carries its own key (deadline, sequence), so a sift
/// compares entries that sit side by side in one array (a node's four children share a cache
/// line or two) instead of chasing every comparison into the slot array; 4 children per node
/// halve the depth (8 levels for 100k timers, not 17). Sifts move a hole rather than swapping, and
/// only moved entries have their slot's `heapIndex` rewritten. Cancelling 100k sleeps at random
/// positions (W7) spent most of its time on the cancelling thread in the binary heap's misses.

struct TimerToken: Sendable, Equatable {
  let slot: Int32
  let generation: UInt32
}

struct TimerHeap<Payload> {
  private struct Slot {
    var generation: UInt32 = 0
    var heapIndex: Int32 = -1  // -1: free
    var payload: Payload?
  }

  private struct Entry {
    var deadline: Int64
    var sequence: UInt64
    var slot: Int32

    @inline(__always)
    func precedes(_ other: Entry) -> Bool {
      deadline < other.deadline || (deadline == other.deadline && sequence < other.sequence)
    }
  }

  private static var arity: Int { 4 }

  private var slots: [Slot] = []
  private var free: [Int32] = []
  private var heap: [Entry] = []
  private var nextSequence: UInt64 = 0
  /// The generation a new slot starts at: above every generation a token was ever given, so a
  /// stale token can never match a slot created after the storage was released (`releaseIfIdle`).
  private var nextFreshGeneration: UInt32 = 0

  /// Above this many slots, an empty heap gives its storage back (100k cancelled sleeps held
  /// about 5 MB until the next burst reused it).
  static var retainedSlots: Int { 4096 }

  var count: Int { heap.count }
  var isEmpty: Bool { heap.isEmpty }

  /// The earliest deadline, or nil when empty.
  var earliestDeadline: Int64? { heap.first?.deadline }

  mutating func insert(deadline: Int64) -> TimerToken {
    let slot: Int32
    if let s = free.popLast() {
      slot = s
    } else {
      slot = Int32(slots.count)
      slots.append(Slot(generation: nextFreshGeneration))
    }
    nextSequence &+= 1
    slots[Int(slot)].payload = nil
    heap.append(Entry(deadline: deadline, sequence: nextSequence, slot: slot))
    siftUp(heap.count - 1)
    return TimerToken(slot: slot, generation: slots[Int(slot)].generation)
  }

  func contains(_ token: TimerToken) -> Bool {
    Int(token.slot) < slots.count && slots[Int(token.slot)].generation == token.generation
      && slots[Int(token.slot)].heapIndex >= 0
  }

  /// Attaches `payload` to a live timer; false when the token is stale.
  mutating func attach(_ token: TimerToken, _ payload: Payload) -> Bool {
    guard contains(token) else { return false }
    slots[Int(token.slot)].payload = payload
    return true
  }

  /// Removes a live timer, returning (found, its payload).
  mutating func remove(_ token: TimerToken) -> (found: Bool, payload: Payload?) {
    guard contains(token) else { return (false, nil) }
    let index = Int(slots[Int(token.slot)].heapIndex)
    return (true, removeAt(index))
  }

  /// Pops every timer whose deadline is <= now, in (deadline, submission) order.
  mutating func popExpired(now: Int64, into out: inout [Payload?]) {
    while let top = heap.first, top.deadline <= now {
      out.append(removeAt(0))
    }
  }

  /// Removes everything, returning all payloads.
  mutating func removeAll(into out: inout [Payload?]) {
    while !heap.isEmpty { out.append(removeAt(heap.count - 1)) }
  }

  private mutating func removeAt(_ index: Int) -> Payload? {
    let slot = heap[index].slot
    let last = heap.removeLast()
    if index < heap.count {
      // The last entry fills the hole: it moves up or down from there.
      if index > 0 && last.precedes(heap[(index - 1) / Self.arity]) {
        place(last, at: index, up: true)
      } else {
        place(last, at: index, up: false)
      }
    }
    let payload = slots[Int(slot)].payload
    slots[Int(slot)].payload = nil
    slots[Int(slot)].heapIndex = -1
    slots[Int(slot)].generation &+= 1
    nextFreshGeneration = max(nextFreshGeneration, slots[Int(slot)].generation &+ 1)
    free.append(slot)
    if heap.isEmpty && slots.count > Self.retainedSlots { releaseStorage() }
    return payload
  }

  /// Drops the slot, free-list and heap storage of an empty heap (tokens stay stale: see
  /// `nextFreshGeneration`).
  private mutating func releaseStorage() {
    slots = []
    free = []
    heap = []
  }

  private mutating func siftUp(_ index: Int) {
    place(heap[index], at: index, up: true)
  }

  /// Moves the hole at `start` up (toward the root) or down until `entry` fits there, then
  /// stores it, rewriting `heapIndex` of every entry moved.
  private mutating func place(_ entry: Entry, at start: Int, up: Bool) {
    var i = start
    if up {
      while i > 0 {
        let parent = (i - 1) / Self.arity
        if !entry.precedes(heap[parent]) { break }
        heap[i] = heap[parent]
        slots[Int(heap[i].slot)].heapIndex = Int32(i)
        i = parent
      }
    } else {
      let n = heap.count
      while true {
        let first = Self.arity * i + 1
        if first >= n { break }
        var best = first
        var child = first + 1
        let end = min(first + Self.arity, n)
        while child < end {
          if heap[child].precedes(heap[best]) { best = child }
          child += 1
        }
        if !heap[best].precedes(entry) { break }
        heap[i] = heap[best]
        slots[Int(heap[i].slot)].heapIndex = Int32(i)
        i = best
      }
    }
    heap[i] = entry
    slots[Int(entry.slot)].heapIndex = Int32(i)
  }
}
