/// The record of how ``Parallelism/probe(root:environment:affinityCount:)`` decided: every input
/// it read and every value it ignored, so `vtasks probe` can show its reasoning. A value type;
/// any thread may use it.

/// How ``Parallelism/probe(root:environment:affinityCount:)`` decided.
public struct ParallelismReport: Sendable, Codable, Equatable {
  /// Which input set ``parallelism``.
  public enum Decision: String, Sendable, Codable {
    /// The affinity mask: no cgroup quota, or none tighter.
    case affinity
    /// The tightest cgroup CPU quota, rounded up, was below the affinity count.
    case cgroupQuota
    /// `VIRTUAL_TASKS_PARALLELISM` held a positive integer.
    case override
  }

  /// Where ``affinityCount`` came from.
  public enum AffinitySource: String, Sendable, Codable {
    /// `sched_getaffinity` of the calling thread.
    case schedGetaffinity
    /// Passed in by the caller (tests).
    case injected
    /// `sched_getaffinity` failed; the count of online CPUs was used instead.
    case onlineProcessors
  }

  /// The result: `min(affinity, ceil(tightest quota))`, at least 1, or the override.
  public var parallelism: Int
  public var decidedBy: Decision
  /// CPUs in this thread's affinity mask (at least 1).
  public var affinityCount: Int
  public var affinitySource: AffinitySource
  /// The prefix put before every path read (`/` outside tests).
  public var root: String
  /// The cgroup versions of the CPU hierarchies this process belongs to and that are mounted:
  /// `[1]`, `[2]`, `[1, 2]` (v1 `cpu` plus the unified hierarchy, "hybrid"), or `[]`.
  public var cgroupVersions: [Int]
  /// `/proc/self/cgroup` (with its contents) and `/proc/self/mountinfo`.
  public var procFiles: [ProbeFileRead]
  /// One entry per CPU hierarchy in `/proc/self/cgroup`, with the quota files read.
  public var hierarchies: [CgroupHierarchyReport]
  /// The tightest quota over all hierarchies and levels; nil when none applies.
  public var quota: CPUQuota?
  /// The environment override, when the variable is set.
  public var override: OverrideReport?

  public init(
    parallelism: Int,
    affinityCount: Int,
    decidedBy: Decision = .affinity,
    affinitySource: AffinitySource = .injected,
    root: String = "/",
    cgroupVersions: [Int] = [],
    procFiles: [ProbeFileRead] = [],
    hierarchies: [CgroupHierarchyReport] = [],
    quota: CPUQuota? = nil,
    override: OverrideReport? = nil
  ) {
    self.parallelism = parallelism
    self.affinityCount = affinityCount
    self.decidedBy = decidedBy
    self.affinitySource = affinitySource
    self.root = root
    self.cgroupVersions = cgroupVersions
    self.procFiles = procFiles
    self.hierarchies = hierarchies
    self.quota = quota
    self.override = override
  }
}

/// What became of `VIRTUAL_TASKS_PARALLELISM`.
public struct OverrideReport: Sendable, Codable, Equatable {
  public enum Status: String, Sendable, Codable {
    /// A positive integer: it is the result.
    case applied
    /// Not an integer (`abc`, empty, out of range): ignored.
    case notAnInteger
    /// An integer below 1 (`0`, `-3`): ignored.
    case notPositive
  }

  public var variable: String
  /// The value exactly as found in the environment.
  public var value: String
  public var status: Status
  /// The parsed value when ``status`` is ``Status/applied``.
  public var parallelism: Int?

  /// Whether the value was ignored.
  public var isIgnored: Bool { status != .applied }

  /// Parses `value` (surrounding whitespace allowed).
  init(variable: String, value: String) {
    self.variable = variable
    self.value = value
    if let number = Int(ProbeFile.trimmed(value)) {
      if number > 0 {
        status = .applied
        parallelism = number
      } else {
        status = .notPositive
      }
    } else {
      status = .notAnInteger
    }
  }
}
