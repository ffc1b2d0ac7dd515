/// `vtasks probe`: runs the parallelism probe and shows every decision it made, as text or as
/// one JSON object.
import ArgumentParser
import Foundation
import VirtualTasks

struct ProbeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "probe",
    abstract: "Show how the available parallelism was decided.",
    discussion: """
      The result is min(affinity CPU count, ceil(tightest cgroup CPU quota)), at least 1, \
      where the tightest quota is taken over the leaf cgroup and all its ancestors, in the \
      cgroup v1 cpu hierarchy and in the v2 hierarchy. \(Parallelism.overrideVariable), when \
      it holds a positive integer, wins; other values are ignored and reported.

      Examples:
        vtasks probe                       # every decision, one per line
        vtasks probe --json | jq .parallelism
        taskset -c 0 vtasks probe --json   # affinity of one CPU: parallelism 1
        \(Parallelism.overrideVariable)=4 vtasks probe
        vtasks probe --root /tmp/fake-root # read proc/ and sys/ of a fixture tree
      """
  )

  @Flag(help: "Print one JSON object; its integer field `parallelism` is the result.")
  var json = false

  @Option(help: "Read /proc and cgroup files under this directory instead of / (fixture trees).")
  var root = "/"

  func run() throws {
    let report = Parallelism.probe(root: root)
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
    } else {
      print(Self.explain(report).joined(separator: "\n"))
    }
  }

  /// The report as lines of text, in the order the probe decides.
  static func explain(_ report: ParallelismReport) -> [String] {
    var lines: [String] = []
    let source =
      switch report.affinitySource {
      case .schedGetaffinity: "sched_getaffinity"
      case .injected: "injected"
      case .onlineProcessors: "online CPUs; sched_getaffinity failed"
      }
    lines.append("affinity: \(report.affinityCount) CPUs (\(source))")
    if report.root != "/" { lines.append("root: \(report.root)") }
    for file in report.procFiles {
      lines.append("\(file.path): \(describe(file.status, error: file.error))")
    }
    let versions =
      switch report.cgroupVersions {
      case []: "none found"
      case [1]: "v1"
      case [2]: "v2"
      default: report.cgroupVersions.map { "v\($0)" }.joined(separator: " and ") + " (hybrid)"
      }
    lines.append("cgroup version: \(versions)")

    for hierarchy in report.hierarchies {
      lines.append("cgroup v\(hierarchy.version) (line \"\(hierarchy.line)\"):")
      lines.append("  cgroup path: \(hierarchy.cgroupPath)")
      if let mountPoint = hierarchy.mountPoint, let mountRoot = hierarchy.mountRoot {
        lines.append("  mount point: \(mountPoint) (mount root \(mountRoot))")
      }
      switch hierarchy.status {
      case .walked: break
      case .noMount: lines.append("  no cgroup mount for it in mountinfo: quota unknown")
      case .outsideMountRoot:
        lines.append("  the cgroup path is not under the mount root: quota unknown")
      case .escapesNamespace:
        lines.append("  the cgroup path leaves the cgroup namespace: quota unknown")
      }
      for level in hierarchy.levels {
        let files = level.files.map { file in
          let name = file.path.split(separator: "/").last.map(String.init) ?? file.path
          return file.status == .read
            ? "\(name) = \"\(file.value ?? "")\"" : "\(name) \(describe(file.status, error: file.error))"
        }
        lines.append("  \(level.directory): \(files.joined(separator: ", ")) -> \(describe(level))")
      }
      if hierarchy.status == .walked {
        lines.append("  tightest here: \(hierarchy.quota.map(describe) ?? "no limit")")
      }
    }

    lines.append("quota: \(report.quota.map { "\(describe($0)) in \($0.directory)" } ?? "none")")
    if let override = report.override {
      let verdict =
        switch override.status {
        case .applied: "applied"
        case .notAnInteger: "ignored: not an integer"
        case .notPositive: "ignored: not a positive integer"
        }
      lines.append("override: \(override.variable)=\"\(override.value)\" \(verdict)")
    } else {
      lines.append("override: \(Parallelism.overrideVariable) not set")
    }
    let reason =
      switch report.decidedBy {
      case .affinity: report.quota == nil ? "affinity, no quota" : "affinity, quota not tighter"
      case .cgroupQuota: "cgroup quota, tighter than affinity"
      case .override: "override"
      }
    lines.append("parallelism: \(report.parallelism) (\(reason))")
    return lines
  }

  private static func describe(_ status: ProbeFileRead.Status, error: String?) -> String {
    switch status {
    case .read: "read"
    case .missing: "missing"
    case .unreadable: "unreadable (\(error ?? "unknown error"))"
    }
  }

  private static func describe(_ level: CgroupLevelReport) -> String {
    switch level.outcome {
    case .limited: level.quota.map(describe) ?? "limit"
    case .unlimited: "no limit"
    case .missing: "no quota file"
    case .ignored: "ignored (\(level.reason ?? "malformed"))"
    }
  }

  private static func describe(_ quota: CPUQuota) -> String {
    "\(quota.quotaMicroseconds)/\(quota.periodMicroseconds) us = \(quota.cpus) CPUs, ceil \(quota.ceiling)"
  }
}
