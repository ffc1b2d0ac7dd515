/// The reactor's timers: an indexed 4-ary min-heap over a slab of slots.
///
/// O(log n) insert and cancel (each slot knows its heap position), O(1) peek. Ties on the deadline
/// are broken by a submission sequence number, so equal deadlines fire in submission order. Slots
/// are reused through a free list and carry a generation, so a stale token (a sleep that already
/// fired or was cancelled) can never touch a newer timer. Not synchronised: the reactor guards it
/// with its lock.
///
/// Cancellation is lazy: a cancelled timer's payload is released, its token made stale and its
/// slot freed at once, but its heap entry stays as a tombstone (flagged in the entry itself, its
/// slot number no longer followed) until it is popped (a due tombstone is dropped, never
/// returned) or tombstones outnumber live timers (`purge`: one O(n) rebuild that reads only the
/// heap array); when no live timer is left, everything is dropped at once. Removing the entry instead cost a sift through
/// the slot array's cache misses: cancelling 100k timers in deadline order (each one the top,
/// as timeouts of equal length are) took 34 ms. So at most as many tombstones as live timers
/// (plus 64) are kept, and `earliestDeadline` is a lower bound: exact unless the top is a
/// tombstone (`settleTop` makes it exact), in which case whoever arms for it wakes early, pops
/// nothing due, and re-arms.
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
    /// Cancelled (a tombstone): `slot` was freed at the cancel and may belong to a newer timer,
    /// so it is never followed. In the padding: the entry stays 24 bytes.
    var dead = false

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
  /// stale token can never match a slot created after the storage was released (`releaseStorage`).
  private var nextFreshGeneration: UInt32 = 0
  /// Heap entries whose timer was cancelled (see the type's comment).
  private var tombstones = 0

  /// Above this many slots, an empty heap gives its storage back (100k cancelled sleeps held
  /// about 5 MB until the next burst reused it).
  static var retainedSlots: Int { 4096 }

  /// Live timers (tombstones not counted).
  var count: Int { heap.count - tombstones }
  var isEmpty: Bool { heap.isEmpty }  // with no live timer left, the tombstones are dropped too
  /// Heap entries, tombstones included (tests: the tombstone bound).
  var storedEntries: Int { heap.count }

  /// The earliest deadline, or nil when no timer is pending. Never later than the earliest live
  /// timer's; earlier when that entry is a tombstone (see the type's comment).
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

  /// Removes a live timer, returning (found, its payload). Its token is stale from then on.
  mutating func remove(_ token: TimerToken) -> (found: Bool, payload: Payload?) {
    guard contains(token) else { return (false, nil) }
    let slot = Int(token.slot)
    let payload = slots[slot].payload.take()
    heap[Int(slots[slot].heapIndex)].dead = true
    freeSlot(slot)
    tombstones += 1
    purgeIfDue()
    return (true, payload)
  }

  /// Tombstones kept before a purge may run, however few timers are live.
  static var tombstoneSlack: Int { 64 }

  /// Pops every live timer whose deadline is <= now, in (deadline, submission) order, and drops
  /// the tombstones among them.
  mutating func popExpired(now: Int64, into out: inout [Payload?]) {
    while let top = heap.first, top.deadline <= now {
      let payload = removeAt(0)
      if !top.dead { out.append(payload) }
    }
    purgeIfDue()
  }

  /// Drops the tombstones at the top, so that `earliestDeadline` is exact (the timer watcher's
  /// claim, the re-arm after a fire). Each costs the sift the cancellation skipped.
  mutating func settleTop() {
    while let top = heap.first, top.dead { _ = removeAt(0) }
  }

  /// Purges when no timer is live, or when tombstones outnumber live timers by the slack.
  @inline(__always)
  private mutating func purgeIfDue() {
    let live = heap.count - tombstones
    if tombstones > 0 && (live == 0 || (tombstones > Self.tombstoneSlack && tombstones > live)) { purge() }
  }

  /// Drops every tombstone and rebuilds the heap (Floyd's bottom-up heapify), O(n). One pass
  /// compacts the live entries (recording where each went) and frees the tombstones' slots; the
  /// heapify then rewrites only the entries it moves.
  private mutating func purge() {
    let before = heap.count
    var kept = 0
    slots.withUnsafeMutableBufferPointer { slots in
      heap.withUnsafeMutableBufferPointer { heap in
        for i in 0..<before where !heap[i].dead {
          heap[kept] = heap[i]
          slots[Int(heap[kept].slot)].heapIndex = Int32(kept)
          kept += 1
        }
      }
    }
    tombstones = 0
    heap.removeLast(before - kept)
    if heap.count > 1 {
      var i = (heap.count - 2) / Self.arity
      while i >= 0 {
        place(heap[i], at: i, up: false)
        i -= 1
      }
    }
    if heap.isEmpty && slots.count > Self.retainedSlots { releaseStorage() }
  }

  /// Returns a slot to the free list, its payload already taken: its tokens are stale from now
  /// on. Called when its entry leaves the heap, or becomes a tombstone.
  @inline(__always)
  private mutating func freeSlot(_ slot: Int) {
    slots[slot].heapIndex = -1
    makeStale(slot)
    free.append(Int32(slot))
  }

  /// Moves the slot to a new generation: every token handed out for it is stale from now on.
  @inline(__always)
  private mutating func makeStale(_ slot: Int) {
    slots[slot].generation &+= 1
    nextFreshGeneration = max(nextFreshGeneration, slots[slot].generation &+ 1)
  }

  private mutating func removeAt(_ index: Int) -> Payload? {
    let removed = heap[index]
    let last = heap.removeLast()
    if index < heap.count {
      // The last entry fills the hole: it moves up or down from there.
      if index > 0 && last.precedes(heap[(index - 1) / Self.arity]) {
        place(last, at: index, up: true)
      } else {
        place(last, at: index, up: false)
      }
    }
    var payload: Payload?
    if removed.dead {
      tombstones -= 1  // its slot was freed when it was cancelled
    } else {
      payload = slots[Int(removed.slot)].payload.take()
      freeSlot(Int(removed.slot))
    }
    if heap.isEmpty && slots.count > Self.retainedSlots { releaseStorage() }
    return payload
  }

  /// Drops the slot, free-list and heap storage of an empty heap (tokens stay stale: see
  /// `nextFreshGeneration`).
  private mutating func releaseStorage() {
    slots = []
    free = []
    heap = []
    tombstones = 0
  }

  private mutating func siftUp(_ index: Int) {
    place(heap[index], at: index, up: true)
  }

  /// Moves the hole at `start` up (toward the root) or down until `entry` fits there, then
  /// stores it, rewriting `heapIndex` of every live entry moved. Indices stay within the heap by construction; the
  /// unchecked buffers spare a bounds and uniqueness check per level on the reactor's hot path.
  private mutating func place(_ entry: Entry, at start: Int, up: Bool) {
    slots.withUnsafeMutableBufferPointer { slots in
      heap.withUnsafeMutableBufferPointer { heap in
        var i = start
        if up {
          while i > 0 {
            let parent = (i - 1) / Self.arity
            if !entry.precedes(heap[parent]) { break }
            heap[i] = heap[parent]
            if !heap[i].dead { slots[Int(heap[i].slot)].heapIndex = Int32(i) }
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
            if !heap[i].dead { slots[Int(heap[i].slot)].heapIndex = Int32(i) }
            i = best
          }
        }
        heap[i] = entry
        if !entry.dead { slots[Int(entry.slot)].heapIndex = Int32(i) }
      }
    }
  }
}
