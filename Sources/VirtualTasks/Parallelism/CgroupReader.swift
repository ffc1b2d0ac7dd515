/// Finds this process's CPU cgroups and walks them: `/proc/self/cgroup` names the cgroup path
/// per hierarchy, `/proc/self/mountinfo` says where that hierarchy is mounted, and every
/// directory from the leaf cgroup up to the mount point is asked for its quota. Reads files
/// only; any thread may call it.
///
/// Mapping a cgroup path to a directory: the path is relative to the cgroup namespace root, the
/// mount exposes the hierarchy from its mount root (`/` on a host, `/docker/abc` in a v1
/// container without a cgroup namespace). So the path must be at or below the mount root; the
/// mount root prefix is stripped and the rest joined to the mount point. A path outside the
/// mount root, or one climbing out of the namespace (`/../x`, what the kernel shows for a
/// cgroup outside our namespace), cannot be located and counts as unknown: no quota.

/// One hierarchy from `/proc/self/cgroup` that can carry a CPU quota, and what its walk found.
public struct CgroupHierarchyReport: Sendable, Codable, Equatable {
  public enum Status: String, Sendable, Codable {
    /// The directories from the leaf up to the mount point were read.
    case walked
    /// No matching cgroup mount in mountinfo (or mountinfo was unreadable).
    case noMount
    /// The cgroup path is not at or below any matching mount's root.
    case outsideMountRoot
    /// The cgroup path climbs out of the cgroup namespace (`..`) or is not absolute.
    case escapesNamespace
  }

  /// 1 for a v1 `cpu` hierarchy, 2 for the unified hierarchy.
  public var version: Int
  /// The `/proc/self/cgroup` line this came from (`4:cpu,cpuacct:/docker/abc`).
  public var line: String
  /// The cgroup path as the kernel reports it, relative to the cgroup namespace.
  public var cgroupPath: String
  public var mountRoot: String?
  /// The mount point, unescaped, without the probe root.
  public var mountPoint: String?
  /// The mountinfo line that was chosen.
  public var mountInfoLine: String?
  public var status: Status
  /// Leaf first, mount point last.
  public var levels: [CgroupLevelReport]
  /// The tightest quota among `levels`.
  public var quota: CPUQuota?
}

enum CgroupReader {
  /// A line of `/proc/self/cgroup` that matters for CPU quotas.
  struct Membership: Equatable {
    var version: Int
    var path: String
    var line: String
  }

  /// The v1 lines whose controller list contains `cpu` and the v2 line `0::PATH`; named v1
  /// hierarchies (`name=systemd`) and other controllers are skipped, as are malformed lines.
  static func memberships(_ text: String) -> [Membership] {
    var found: [Membership] = []
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard parts.count == 3, Int(parts[0]) != nil else { continue }
      let path = String(parts[2])
      if parts[0] == "0" && parts[1].isEmpty {
        found.append(Membership(version: 2, path: path, line: String(line)))
      } else if parts[1].split(separator: ",").contains("cpu") {
        found.append(Membership(version: 1, path: path, line: String(line)))
      }
    }
    return found
  }

  /// Path components without empty and `.` parts; nil when the path is relative or has `..`.
  static func components(_ path: String) -> [Substring]? {
    guard path.hasPrefix("/") else { return nil }
    let parts = path.split(separator: "/").filter { $0 != "." }
    return parts.contains("..") ? nil : parts
  }

  /// Locates `membership` among `mounts` and walks it from the leaf up to the mount point.
  static func walk(
    _ membership: Membership, mounts: [MountInfoEntry], root: String
  ) -> CgroupHierarchyReport {
    var report = CgroupHierarchyReport(
      version: membership.version, line: membership.line, cgroupPath: membership.path,
      status: .noMount, levels: [])
    let candidates = mounts.filter { membership.version == 1 ? $0.isCgroupV1CPU : $0.isCgroupV2 }
    guard let first = candidates.first else { return report }
    guard let path = components(membership.path) else {
      report.status = .escapesNamespace
      return report
    }
    // The most specific mount whose root contains the path; the first on a tie.
    var chosen: (mount: MountInfoEntry, relative: ArraySlice<Substring>)?
    for mount in candidates {
      guard let mountRoot = components(mount.root), mountRoot.count <= path.count,
        path.starts(with: mountRoot)
      else { continue }
      if let best = chosen, best.relative.count <= path.count - mountRoot.count { continue }
      chosen = (mount, path.dropFirst(mountRoot.count))
    }
    guard let (mount, relative) = chosen else {
      report.status = .outsideMountRoot
      report.mountRoot = first.root
      report.mountPoint = first.mountPoint
      report.mountInfoLine = first.line
      return report
    }
    report.status = .walked
    report.mountRoot = mount.root
    report.mountPoint = mount.mountPoint
    report.mountInfoLine = mount.line

    var base = Substring(ProbeFile.rooted(mount.mountPoint, under: root))
    while base.count > 1 && base.hasSuffix("/") { base = base.dropLast() }
    for depth in stride(from: relative.count, through: 0, by: -1) {
      let directory = relative.prefix(depth).reduce(String(base), ProbeFile.join)
      let level =
        membership.version == 1
        ? CgroupQuotaFiles.readV1(directory: directory)
        : CgroupQuotaFiles.readV2(directory: directory)
      report.levels.append(level)
      if let quota = level.quota, report.quota.map({ quota.isTighter(than: $0) }) ?? true {
        report.quota = quota
      }
    }
    return report
  }
}
