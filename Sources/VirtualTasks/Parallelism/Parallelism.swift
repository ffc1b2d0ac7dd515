/// How many CPUs this process may use: affinity, cgroup v1/v2 CPU quotas, an environment override.
/// See DESIGN.md section 5. Pure reads; any thread may call it.
///
/// The result is `min(affinity, ceil(tightest quota))`, at least 1, unless
/// `VIRTUAL_TASKS_PARALLELISM` holds a positive integer, which wins. The tightest quota is taken
/// over the leaf cgroup and every ancestor up to the mount root (a parent's limit binds its
/// children even when the leaf says "no limit"), and over both the v1 `cpu` and the v2
/// hierarchy when a host has both. A quota of 1.5 CPUs gives 2: rounding down would leave a
/// third of the budget unused, rounding up costs at most some throttling of one thread.
/// Missing or malformed files never fail the probe; they are recorded in the report.
import CShims

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

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
    let (affinity, affinitySource) = affinity(injected: affinityCount)

    // Which cgroups, and where they are mounted.
    let cgroupPath = ProbeFile.rooted("/proc/self/cgroup", under: root)
    let mountInfoPath = ProbeFile.rooted("/proc/self/mountinfo", under: root)
    let (cgroupText, cgroupRecord) = ProbeFile.load(cgroupPath, keepValue: true)
    let (mountInfoText, mountInfoRecord) = ProbeFile.load(mountInfoPath, keepValue: false)
    let memberships = cgroupText.map(CgroupReader.memberships) ?? []
    let mounts = mountInfoText.map(MountInfo.parse) ?? []

    // Every level of every CPU hierarchy; the tightest quota of all.
    let hierarchies = memberships.map { CgroupReader.walk($0, mounts: mounts, root: root) }
    var tightest: CPUQuota?
    for quota in hierarchies.compactMap(\.quota)
    where tightest.map({ quota.isTighter(than: $0) }) ?? true {
      tightest = quota
    }

    var report = ParallelismReport(
      parallelism: affinity,
      affinityCount: affinity,
      decidedBy: .affinity,
      affinitySource: affinitySource,
      root: root,
      cgroupVersions: Array(Set(hierarchies.filter { $0.status != .noMount }.map(\.version))).sorted(),
      procFiles: [cgroupRecord, mountInfoRecord],
      hierarchies: hierarchies,
      quota: tightest,
      override: overrideValue(environment).map {
        OverrideReport(variable: overrideVariable, value: $0)
      }
    )
    if let tightest, tightest.ceiling < affinity {
      report.parallelism = max(1, tightest.ceiling)
      report.decidedBy = .cgroupQuota
    }
    if let override = report.override?.parallelism {
      report.parallelism = override
      report.decidedBy = .override
    }
    return report
  }

  /// The affinity count, at least 1: injected, else `sched_getaffinity`, else online CPUs.
  private static func affinity(injected: Int?) -> (Int, ParallelismReport.AffinitySource) {
    if let injected { return (max(1, injected), .injected) }
    let count = Int(vt_affinity_count())
    if count > 0 { return (count, .schedGetaffinity) }
    return (max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))), .onlineProcessors)
  }

  private static func overrideValue(_ environment: [String: String]?) -> String? {
    if let environment { return environment[overrideVariable] }
    return getenv(overrideVariable).map { String(cString: $0) }
  }
}
