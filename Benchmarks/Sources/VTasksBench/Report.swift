/// The table: one row per workload metric, one column per peer that ran (median of the runs,
/// spread min..max), the ratio of this library to the best real peer, and the issue's target. Printed as
/// text and written as Markdown and JSON.
import Foundation

struct Cell: Codable, Sendable {
  var median: Double
  var min: Double
  var max: Double
  var runs: [Double]
}

struct ReportRow: Codable, Sendable {
  var workload: String
  var name: String
  var metric: String
  var unit: String
  var better: Better
  var cells: [String: Cell]
  var bestPeer: String?
  /// vtasks median / best peer median (> 1 is better when higher is better, < 1 when lower is).
  var ratio: Double?
  var target: String?
  var targetMet: Bool?
}

struct Report: Codable, Sendable {
  var machine: Machine
  var quick: Bool
  var runsPerCell: Int
  var sizes: [String: Int]
  var peers: [String: String]
  var workloads: [String: String]
  var rows: [ReportRow]

  /// The order of the columns; a peer no workload of this report ran gets none.
  static let columnOrder: [Peer] = [
    .vtasks, .nio, .dispatch, .swift, .wasmkit, .cTimerfd, .inline, .continuations,
  ]

  var columns: [Peer] {
    Self.columnOrder.filter { peer in rows.contains { $0.cells[peer.rawValue] != nil } }
  }

  init(machine: Machine, quick: Bool, runs: Int, sizes: Sizes, results: [RowResult]) {
    self.machine = machine
    self.quick = quick
    runsPerCell = runs
    self.sizes = [
      "W1-W3 tasks": sizes.tasks, "W4 roundtrips": sizes.roundtrips, "W5 sleeps": sizes.timerMass,
      "W6 sleeps": sizes.precision, "W7 sleeps": sizes.cancel, "W8 pending sleeps": sizes.idleSleeps,
      "W8 idle window ms": Int(sizes.idleWindowNanos / 1_000_000),
      "WA1 spawn+join calls": sizes.wasmSpawns, "WA2 threads": sizes.wasmThreads,
      "WA2 adds per thread": sizes.wasmAddsPerThread,
    ]
    peers = Dictionary(uniqueKeysWithValues: Peer.allCases.map { ($0.rawValue, $0.apiNote) })
    var descriptions: [String: String] = [:]
    for r in results { descriptions["\(r.workload.id) \(r.workload.name)"] = r.workload.summary }
    workloads = descriptions
    rows = results.map { r in
      var cells: [String: Cell] = [:]
      var medians: [Peer: Double] = [:]
      for (peer, values) in r.values where !values.isEmpty {
        let m = median(values)
        medians[peer] = m
        cells[peer.rawValue] = Cell(
          median: m, min: values.min() ?? .nan, max: values.max() ?? .nan, runs: values)
      }
      let best = bestPeer(medians, r.metric.better)
      var ratio: Double? = nil
      if r.metric.showsRatio, let v = medians[.vtasks], let (_, b) = best, b != 0 { ratio = v / b }
      return ReportRow(
        workload: r.workload.id, name: r.workload.name, metric: r.metric.label, unit: r.metric.unit,
        better: r.metric.better, cells: cells, bestPeer: best?.0.rawValue, ratio: ratio,
        target: r.metric.target?.text, targetMet: r.metric.target?.check(medians))
    }
  }

  // MARK: text

  static func number(_ v: Double) -> String {
    if v.isNaN { return "-" }
    let a = abs(v)
    if a >= 1000 { return String(format: "%.0f", v) }
    if a >= 100 { return String(format: "%.1f", v) }
    if a >= 10 { return String(format: "%.2f", v) }
    return String(format: "%.3f", v)
  }

  static func cellText(_ c: Cell?, runs: Int) -> String {
    guard let c else { return "—" }
    if runs == 1 { return number(c.median) }
    return "\(number(c.median)) (\(number(c.min))..\(number(c.max)))"
  }

  func ratioText(_ row: ReportRow) -> String {
    guard let ratio = row.ratio, let best = row.bestPeer, let peer = Peer(rawValue: best) else { return "—" }
    return String(format: "%.2fx vs %@", ratio, peer.title)
  }

  func metText(_ row: ReportRow) -> String {
    guard let met = row.targetMet else { return row.target == nil ? "" : "n/a" }
    return met ? "met" : "MISSED"
  }

  var header: [String] {
    ["workload", "metric"] + columns.map(\.title) + ["vtasks / best peer", "target", ""]
  }

  var body: [[String]] {
    rows.map { row in
      let arrow = row.better == .higher ? "↑" : "↓"
      return ["\(row.workload) \(row.name)", "\(row.metric) (\(row.unit)) \(arrow)"]
        + columns.map { Self.cellText(row.cells[$0.rawValue], runs: runsPerCell) }
        + [ratioText(row), row.target ?? "", metText(row)]
    }
  }

  var plainTable: String {
    let all = [header] + body
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
      cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
        .joined(separator: "  ")
    }
    return
      ([line(header), String(repeating: "-", count: widths.reduce(0, +) + 2 * widths.count)]
      + body.map(line)).joined(separator: "\n")
  }

  var markdown: String {
    var out = "# vtasks-bench\(quick ? " (quick)" : "")\n\n"
    out += "Measured \(machine.date) on \(machine.cpuModel), \(machine.onlineCPUs) CPUs, "
    out += "\(machine.kernel), Swift \(machine.swiftVersion). "
    out += "Every peer that takes a thread count got \(machine.threads) (`Parallelism.available()`); "
    out += "Dispatch and Swift's global executor use their own width (the CPU count). "
    out += "Load average at start \(machine.loadAverageStart), at end \(machine.loadAverageEnd); "
    out += "up to \(machine.compilersSeen) compiler processes were running next to the benchmark."
    out += machine.note.isEmpty ? "\n\n" : " \(machine.note).\n\n"
    out += "Each cell: median of \(runsPerCell) run\(runsPerCell == 1 ? "" : "s")"
    out += runsPerCell > 1 ? " (min..max). " : ". "
    out += "↑ higher is better, ↓ lower is better. \"vtasks / best peer\" divides this library's median "
    out += "by the best of the other peers of its row: SwiftNIO, Dispatch, Swift's default executor, "
    out += "WasmKit's WASIThreads (floors excluded).\n\n"
    out += "| " + header.joined(separator: " | ") + " |\n"
    out += "|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
    for r in body { out += "| " + r.joined(separator: " | ") + " |\n" }
    out += "\n## Sizes\n\n"
    for (k, v) in sizes.sorted(by: { $0.key < $1.key }) { out += "- \(k): \(v)\n" }
    out += "\n## Workloads\n\n"
    for (k, v) in workloads.sorted(by: { $0.key < $1.key }) { out += "- **\(k)**: \(v)\n" }
    out += "\n## Peers\n\n"
    for peer in columns { out += "- **\(peer.title)**: \(peer.apiNote)\n" }
    return out
  }

  func json() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return try encoder.encode(self)
  }
}
