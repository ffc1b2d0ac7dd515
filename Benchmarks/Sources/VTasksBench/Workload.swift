/// What a workload is to the harness: an id (W1..W8, WA1, WA2), the peers it runs against, the
/// metrics one run yields (each a row of the table, with the target for it), and the run
/// itself.
enum Better: String, Codable, Sendable {
  case higher, lower
}

/// A target of issue 7, checked against the medians of one row.
struct Target: Sendable {
  let text: String
  /// nil when a peer the target refers to did not run.
  let check: @Sendable ([Peer: Double]) -> Bool?
}

struct MetricSpec: Sendable {
  let key: String
  let label: String
  let unit: String
  let better: Better
  let target: Target?
  /// False for rows whose values sit near zero or change sign (a ratio would mean nothing).
  let showsRatio: Bool

  init(
    _ key: String, _ label: String, _ unit: String, _ better: Better, target: Target? = nil,
    showsRatio: Bool = true
  ) {
    self.key = key
    self.label = label
    self.unit = unit
    self.better = better
    self.target = target
    self.showsRatio = showsRatio
  }
}

/// The problem sizes; `--quick` shrinks them.
struct Sizes: Sendable {
  var tasks = 1_000_000  // W1, W2, W3
  var roundtrips = 20_000  // W4
  var timerMass = 100_000  // W5
  var precision = 1000  // W6
  var cancel = 100_000  // W7
  var idleSleeps = 10_000  // W8
  var idleWindowNanos: Int64 = 2_000_000_000  // W8
  var wasmSpawns = 10_000  // WA1
  var wasmThreads = 64  // WA2
  var wasmAddsPerThread = 1_000_000  // WA2

  static let full = Sizes()
  static let quick = Sizes(
    tasks: 100_000, roundtrips: 2000, timerMass: 10_000, precision: 200, cancel: 10_000,
    idleSleeps: 10_000, idleWindowNanos: 500_000_000, wasmSpawns: 1000, wasmThreads: 64,
    wasmAddsPerThread: 100_000)
}

struct Workload: Sendable {
  let id: String
  let name: String
  let summary: String
  let peers: [Peer]
  let metrics: [MetricSpec]
  /// Run each peer once at 1/20 of the size before measuring (thread pools spun up, caches warm).
  let warmup: Bool
  /// Called after a run of every peer, e.g. to let peers' lingering timers expire.
  let afterRun: (@Sendable (_ sizes: Sizes) -> Void)?
  let run: @Sendable (_ peer: Peer, _ peers: PeerSet, _ sizes: Sizes, _ scale: Int) -> [String: Double]

  init(
    _ id: String, _ name: String, _ summary: String, peers: [Peer], metrics: [MetricSpec],
    warmup: Bool = false, afterRun: (@Sendable (Sizes) -> Void)? = nil,
    run: @escaping @Sendable (Peer, PeerSet, Sizes, Int) -> [String: Double]
  ) {
    self.id = id
    self.name = name
    self.summary = summary
    self.peers = peers
    self.metrics = metrics
    self.warmup = warmup
    self.afterRun = afterRun
    self.run = run
  }
}

// MARK: target helpers

/// The best median among real peers (floors and this library excluded).
func bestPeer(_ medians: [Peer: Double], _ better: Better) -> (Peer, Double)? {
  let candidates = medians.filter { !$0.key.isFloor && $0.key != .vtasks && !$0.value.isNaN }
  switch better {
  case .higher: return candidates.max { $0.value < $1.value }.map { ($0.key, $0.value) }
  case .lower: return candidates.min { $0.value < $1.value }.map { ($0.key, $0.value) }
  }
}

enum Targets {
  static func atLeastTimesBest(_ factor: Double) -> Target {
    Target(text: ">= \(fmtFactor(factor))x best peer") { m in
      guard let v = m[.vtasks], let (_, best) = bestPeer(m, .higher) else { return nil }
      return v >= factor * best
    }
  }

  static func noWorseThanBest(_ better: Better) -> Target {
    Target(text: better == .lower ? "<= best peer" : ">= best peer") { m in
      guard let v = m[.vtasks], let (_, best) = bestPeer(m, better) else { return nil }
      return better == .lower ? v <= best : v >= best
    }
  }

  static func noWorseThan(_ peer: Peer, _ better: Better) -> Target {
    Target(text: better == .lower ? "<= \(peer.title)" : ">= \(peer.title)") { m in
      guard let v = m[.vtasks], let p = m[peer] else { return nil }
      return better == .lower ? v <= p : v >= p
    }
  }

  static func below(_ limit: Double, _ unit: String) -> Target {
    Target(text: "< \(fmtFactor(limit)) \(unit)") { m in m[.vtasks].map { $0 < limit } }
  }

  static func fmtFactor(_ v: Double) -> String {
    v == v.rounded() ? String(Int(v)) : String(v)
  }
}
