/// The reactor's timers: an indexed binary min-heap over a slab of slots.
///
/// O(log n) insert and cancel (each slot knows its heap position), O(1) peek. Ties on the deadline
/// are broken by a submission sequence number, so equal deadlines fire in submission order. Slots
/// are reused through a free list and carry a generation, so a stale token (a sleep that already
/// fired or was cancelled) can never touch a newer timer. Not synchronised: the reactor guards it
/// with its lock.

struct TimerToken: Sendable, Equatable {
  let slot: Int32
  let generation: UInt32
}

struct TimerHeap<Payload> {
  private struct Slot {
    var generation: UInt32 = 0
    var heapIndex: Int32 = -1  // -1: free
    var deadline: Int64 = 0
    var sequence: UInt64 = 0
    var payload: Payload?
  }

  private var slots: [Slot] = []
  private var free: [Int32] = []
  private var heap: [Int32] = []
  private var nextSequence: UInt64 = 0

  var count: Int { heap.count }
  var isEmpty: Bool { heap.isEmpty }

  /// The earliest deadline, or nil when empty.
  var earliestDeadline: Int64? { heap.first.map { slots[Int($0)].deadline } }

  mutating func insert(deadline: Int64) -> TimerToken {
    let slot: Int32
    if let s = free.popLast() {
      slot = s
    } else {
      slot = Int32(slots.count)
      slots.append(Slot())
    }
    nextSequence &+= 1
    slots[Int(slot)].deadline = deadline
    slots[Int(slot)].sequence = nextSequence
    slots[Int(slot)].payload = nil
    slots[Int(slot)].heapIndex = Int32(heap.count)
    heap.append(slot)
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
    while let top = heap.first, slots[Int(top)].deadline <= now {
      out.append(removeAt(0))
    }
  }

  /// Removes everything, returning all payloads.
  mutating func removeAll(into out: inout [Payload?]) {
    while !heap.isEmpty { out.append(removeAt(heap.count - 1)) }
  }

  private mutating func removeAt(_ index: Int) -> Payload? {
    let slot = heap[index]
    let last = heap.removeLast()
    if index < heap.count {
      heap[index] = last
      slots[Int(last)].heapIndex = Int32(index)
      siftDown(index)
      siftUp(index)
    }
    let payload = slots[Int(slot)].payload
    slots[Int(slot)].payload = nil
    slots[Int(slot)].heapIndex = -1
    slots[Int(slot)].generation &+= 1
    free.append(slot)
    return payload
  }

  @inline(__always)
  private func less(_ a: Int32, _ b: Int32) -> Bool {
    let da = slots[Int(a)].deadline
    let db = slots[Int(b)].deadline
    return da < db || (da == db && slots[Int(a)].sequence < slots[Int(b)].sequence)
  }

  private mutating func siftUp(_ start: Int) {
    var i = start
    while i > 0 {
      let parent = (i - 1) / 2
      if !less(heap[i], heap[parent]) { break }
      heap.swapAt(i, parent)
      slots[Int(heap[i])].heapIndex = Int32(i)
      slots[Int(heap[parent])].heapIndex = Int32(parent)
      i = parent
    }
  }

  private mutating func siftDown(_ start: Int) {
    var i = start
    let n = heap.count
    while true {
      let l = 2 * i + 1
      if l >= n { break }
      var m = l
      if l + 1 < n && less(heap[l + 1], heap[l]) { m = l + 1 }
      if !less(heap[m], heap[i]) { break }
      heap.swapAt(i, m)
      slots[Int(heap[i])].heapIndex = Int32(i)
      slots[Int(heap[m])].heapIndex = Int32(m)
      i = m
    }
  }
}
