/// Runs the workloads: for each workload, `runs` rounds, each round running every peer once in
/// turn (so a burst of outside load hits every column alike), after an optional warm-up round at
/// 1/20 of the size. Shows one progress line on stderr.
#if canImport(Glibc)
  import Glibc
#endif

struct RowResult: Sendable {
  let workload: Workload
  let metric: MetricSpec
  /// Peer -> the value of each run, in run order.
  var values: [Peer: [Double]]
}

/// Rewrites the progress line on stderr.
func progressNote(_ text: String) {
  writeStderr("\r\u{1B}[K\(text)")
}

final class Harness {
  let peers: PeerSet
  let sizes: Sizes
  let runs: Int
  let workloads: [Workload]
  private let startedAt = nowNanos()
  /// The most compiler processes seen running next to us at any cell start (machine load).
  private(set) var maxCompilersSeen = 0

  /// The columns to run (all when empty: `--peers`).
  let onlyPeers: Set<Peer>

  init(peers: PeerSet, sizes: Sizes, runs: Int, workloads: [Workload], onlyPeers: Set<Peer> = []) {
    self.onlyPeers = onlyPeers
    self.peers = peers
    self.sizes = sizes
    self.runs = runs
    self.workloads = workloads
  }

  func run() -> [RowResult] {
    var rows: [RowResult] = []
    let totalCells = workloads.reduce(0) { $0 + columns($1).count * runs }
    var cell = 0
    for workload in workloads {
      var results: [String: [Peer: [Double]]] = [:]
      if workload.warmup {
        for peer in columns(workload) {
          note(cell, totalCells, "\(workload.id) \(workload.name) · \(peer.title) · warm-up")
          _ = workload.run(peer, peers, sizes, 20)
        }
      }
      for round in 1...runs {
        for peer in columns(workload) {
          cell += 1
          note(cell, totalCells, "\(workload.id) \(workload.name) · \(peer.title) · run \(round)/\(runs)")
          let measured = workload.run(peer, peers, sizes, 1)
          for (key, value) in measured { results[key, default: [:]][peer, default: []].append(value) }
        }
        workload.afterRun?(sizes)
      }
      for metric in workload.metrics {
        rows.append(RowResult(workload: workload, metric: metric, values: results[metric.key] ?? [:]))
      }
    }
    progressNote("done: \(totalCells) cells in \((nowNanos() - startedAt) / 1_000_000_000) s\n")
    return rows
  }

  private func columns(_ workload: Workload) -> [Peer] {
    onlyPeers.isEmpty ? workload.peers : workload.peers.filter(onlyPeers.contains)
  }

  private func note(_ cell: Int, _ total: Int, _ text: String) {
    maxCompilersSeen = max(maxCompilersSeen, Machine.compilerProcesses())
    let elapsed = (nowNanos() - startedAt) / 1_000_000_000
    progressNote("[\(cell)/\(total)] \(text) · \(elapsed) s")
  }
}
