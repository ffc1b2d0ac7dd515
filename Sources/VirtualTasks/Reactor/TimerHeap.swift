/// The reactor's timers: a 4-ary min-heap of (deadline, sequence) entries over a slab of slots.
///
/// O(log n) insert, O(1) cancel and peek. Ties on the deadline are broken by a submission
/// sequence number (64 bits: it never wraps), so equal deadlines fire in submission order. The
/// sequence number also names the timer: a slot records the sequence of the timer it holds, a
/// token and a heap entry carry it, and a mismatch means the timer has fired or was cancelled, so
/// a stale token can never touch a newer timer in the same slot. Slots are reused through a free
/// list. Not synchronised: the reactor guards it with its lock.
///
/// Cancellation is lazy: a cancelled timer's payload is released and its slot freed (the token
/// goes stale) at once, touching only the slot; its heap entry stays as a tombstone, recognised
/// by its sequence no longer matching its slot's, until it is popped (a due tombstone is dropped,
/// never returned) or tombstones outnumber live timers three to one (`purge`: one O(n) rebuild);
/// when no live timer is left, everything is dropped at once. Removing the entry instead cost a
/// sift through the slot array's cache misses: cancelling 100k timers in deadline order (each
/// one the top, as timeouts of equal length are) took 34 ms. So at most
/// `tombstonesPerLiveTimer` tombstones per live timer (plus 64) are kept, and `earliestDeadline`
/// is a lower bound: exact unless the top is a
/// tombstone (`settleTop` makes it exact), in which case whoever arms for it wakes early, pops
/// nothing due, and re-arms.
///
/// Layout, for the cache: each heap entry carries its own key (deadline, sequence), so a sift
/// compares entries that sit side by side in one array (a node's four children share a cache
/// line or two) instead of chasing every comparison into the slot array; 4 children per node
/// halve the depth (8 levels for 100k timers, not 17). Sifts move a hole rather than swapping,
/// and touch only the heap array: slots do not record their heap position (a lazy cancel needs
/// none), which had cost a write into a random slot, a cache miss, per level of every sift, under
/// the reactor's lock (W5: workers queued on that lock behind a firing batch).

struct TimerToken: Sendable, Equatable {
  let slot: Int32
  /// The timer's sequence number (never 0).
  let sequence: UInt64
}

struct TimerHeap<Payload> {
  private struct Slot {
    /// The sequence number of the timer in this slot; 0 when free.
    var sequence: UInt64 = 0
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
      slots.append(Slot())
    }
    nextSequence &+= 1
    slots[Int(slot)].sequence = nextSequence
    heap.append(Entry(deadline: deadline, sequence: nextSequence, slot: slot))
    siftUp(heap.count - 1)
    return TimerToken(slot: slot, sequence: nextSequence)
  }

  func contains(_ token: TimerToken) -> Bool {
    Int(token.slot) < slots.count && slots[Int(token.slot)].sequence == token.sequence
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
    let payload = freeSlot(Int(token.slot))
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
      if isLive(top) {
        out.append(freeSlot(Int(top.slot)))
      } else {
        tombstones -= 1
      }
      removeTop()  // last: it may release the slots
    }
    purgeIfDue()
  }

  /// Drops the tombstones at the top, so that `earliestDeadline` is exact (the timer watcher's
  /// claim, the re-arm after a fire). Each costs the sift the cancellation skipped.
  mutating func settleTop() {
    while let top = heap.first, !isLive(top) {
      tombstones -= 1
      removeTop()
    }
  }

  /// Whether `entry` is its slot's current timer (else a tombstone).
  @inline(__always)
  private func isLive(_ entry: Entry) -> Bool {
    slots[Int(entry.slot)].sequence == entry.sequence
  }

  /// Tombstones kept per live timer before a purge. A tombstone is only its 24-byte heap entry
  /// (its slot and payload are freed at the cancel), so a few per live timer cost little memory,
  /// and fewer purges cost less time: cancelling 100k timers in order scans about 200k entries
  /// in purges at 1 per live timer, about 133k at 3.
  static var tombstonesPerLiveTimer: Int { 3 }

  /// Purges when no timer is live, or when tombstones outnumber live timers by the ratio and the
  /// slack.
  @inline(__always)
  private mutating func purgeIfDue() {
    guard tombstones > 0 else { return }
    let live = heap.count - tombstones
    if live == 0 {
      // Only tombstones: nothing to scan.
      heap.removeAll(keepingCapacity: true)
      tombstones = 0
      releaseStorageIfIdle()
    } else if tombstones > Self.tombstoneSlack && tombstones > Self.tombstonesPerLiveTimer * live {
      purge()
    }
  }

  /// Drops every tombstone and rebuilds the heap (Floyd's bottom-up heapify), O(n).
  private mutating func purge() {
    let before = heap.count
    var kept = 0
    slots.withUnsafeBufferPointer { slots in
      heap.withUnsafeMutableBufferPointer { heap in
        for i in 0..<before where slots[Int(heap[i].slot)].sequence == heap[i].sequence {
          heap[kept] = heap[i]
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
    releaseStorageIfIdle()
  }

  /// Frees the slot of a timer that was cancelled or left the heap, returning its payload: its
  /// tokens and its entry (if still in the heap: a tombstone) are stale from now on.
  @inline(__always)
  private mutating func freeSlot(_ slot: Int) -> Payload? {
    slots[slot].sequence = 0
    free.append(Int32(slot))
    return slots[slot].payload.take()
  }

  /// Removes the top entry (its slot is the caller's business).
  private mutating func removeTop() {
    let last = heap.removeLast()
    if !heap.isEmpty { place(last, at: 0, up: false) }  // the last entry fills the hole
    releaseStorageIfIdle()
  }

  /// Drops the slot, free-list and heap storage once the heap is empty, when it holds more than
  /// `retainedSlots` slots. Tokens stay stale: their sequence numbers are never handed out again.
  private mutating func releaseStorageIfIdle() {
    guard heap.isEmpty && slots.count > Self.retainedSlots else { return }
    slots = []
    free = []
    heap = []
    tombstones = 0
  }

  private mutating func siftUp(_ index: Int) {
    place(heap[index], at: index, up: true)
  }

  /// Moves the hole at `start` up (toward the root) or down until `entry` fits there, then
  /// stores it. Indices stay within the heap by construction; the unchecked buffer spares a
  /// bounds and uniqueness check per level on the reactor's hot path.
  private mutating func place(_ entry: Entry, at start: Int, up: Bool) {
    heap.withUnsafeMutableBufferPointer { heap in
      var i = start
      if up {
        while i > 0 {
          let parent = (i - 1) / Self.arity
          if !entry.precedes(heap[parent]) { break }
          heap[i] = heap[parent]
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
          i = best
        }
      }
      heap[i] = entry
    }
  }
}
