/// The bookkeeping of a ``GuestThreadGroup``: thread ids, live slots, and the outcomes joiners
/// wait for.
///
/// A plain value type with no locking of its own: the group mutates it under its monitor only.
/// Ids start at 1 (0 is the main thread), are never reused and stay below 0x20000000, the
/// wasi-threads limit; a spawn past `maxLive` live threads or past the last id is refused.

struct GuestThreadTable {
  /// The largest id a spawned thread may get (wasi-threads: ids are in [1, 2^29)).
  static let maxThreadID: Int32 = 0x1FFF_FFFF

  /// Live guest threads allowed at once, the main thread included.
  let maxLive: Int
  /// Finished threads whose outcome `join` still reports; older ones are forgotten.
  let retainedOutcomes: Int

  private(set) var nextID: Int32 = 1
  /// Threads reserved or running, the main thread included while it runs.
  private(set) var live = 0
  private(set) var mainStarted = false
  /// Threads spawned (reserved and not abandoned), the main thread not included.
  private(set) var spawned = 0
  /// The join hand-off of every retained thread, running or finished.
  private var records: [Int32: OneShot<GuestThreadOutcome>] = [:]
  /// Finished ids, oldest first, from `finishedHead` on (for forgetting the oldest).
  private var finished: [Int32] = []
  private var finishedHead = 0

  /// `firstID` is for tests that reach the end of the id range.
  init(maxLive: Int, retainedOutcomes: Int, firstID: Int32 = 1) {
    self.maxLive = maxLive
    self.retainedOutcomes = retainedOutcomes
    self.nextID = firstID
  }

  /// Reserves a slot and an id for a new thread, or nil when the group is full or out of ids.
  mutating func reserve() -> (id: Int32, record: OneShot<GuestThreadOutcome>)? {
    guard live < maxLive, nextID <= Self.maxThreadID else { return nil }
    let id = nextID
    nextID += 1
    live += 1
    spawned += 1
    let record = OneShot<GuestThreadOutcome>()
    records[id] = record
    return (id, record)
  }

  /// Reserves the main thread's slot (id 0), once.
  mutating func reserveMain() -> OneShot<GuestThreadOutcome>? {
    guard !mainStarted, live < maxLive else { return nil }
    mainStarted = true
    live += 1
    let record = OneShot<GuestThreadOutcome>()
    records[0] = record
    return record
  }

  /// Gives back a reservation whose thread never started (setup failed): no outcome, no join.
  mutating func abandon(_ id: Int32) {
    live -= 1
    records[id] = nil
    if id == 0 { mainStarted = false } else { spawned -= 1 }
  }

  /// Records that `id` finished; its outcome stays joinable until `retainedOutcomes` newer ones.
  mutating func finish(_ id: Int32) {
    live -= 1
    finished.append(id)
    while finished.count - finishedHead > retainedOutcomes {
      records[finished[finishedHead]] = nil
      finishedHead += 1
    }
    if finishedHead > 1024, finishedHead * 2 > finished.count {
      finished.removeFirst(finishedHead)
      finishedHead = 0
    }
  }

  /// The join hand-off of `id`, if it is running or still retained.
  func record(of id: Int32) -> OneShot<GuestThreadOutcome>? { records[id] }
}
