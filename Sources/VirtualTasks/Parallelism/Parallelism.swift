/// How many CPUs this process may use: affinity, cgroup v1/v2 CPU quotas, an environment override.
/// See DESIGN.md section 5. Pure reads; any thread may call it.
import CShims

public enum Parallelism {
  /// The environment variable that overrides the probe when it holds a positive integer.
  public static let overrideVariable = "VIRTUAL_TASKS_PARALLELISM"

  /// What `threadParallelism()` returns: never less than 1, never throws.
  public static func available() -> Int {
    probe().parallelism
  }

  /// Decides parallelism and says how. `root` prefixes every path read (fixture trees in tests);
  /// `environment` nil reads the process's own; `affinityCount` nil asks `sched_getaffinity`.
  public static func probe(
    root: String = "/",
    environment: [String: String]? = nil,
    affinityCount: Int? = nil
  ) -> ParallelismReport {
    // TODO(probe helper): cgroup walk.
    let affinity = affinityCount ?? max(1, Int(vt_affinity_count()))
    return ParallelismReport(parallelism: max(1, affinity), affinityCount: affinity)
  }
}

/// How ``Parallelism/probe(root:environment:affinityCount:)`` decided.
public struct ParallelismReport: Sendable, Codable, Equatable {
  /// The result: `min(affinity, ceil(tightest quota))`, at least 1, or the override.
  public var parallelism: Int
  /// CPUs in this thread's affinity mask.
  public var affinityCount: Int

  public init(parallelism: Int, affinityCount: Int) {
    self.parallelism = parallelism
    self.affinityCount = affinityCount
  }
}
