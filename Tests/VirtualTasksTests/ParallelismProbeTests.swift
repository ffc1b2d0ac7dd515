/// The parallelism probe on fixture cgroup trees (`Fixtures/Parallelism/<case>`): real files laid
/// out as real hosts and containers lay them out, read through the probe's `root` prefix, with
/// the affinity count and the environment injected.
import Foundation
import Testing

@testable import VirtualTasks

enum ParallelismFixture {
  /// The fixture tree `name`, failing the test when the resource bundle lacks it (an absent tree
  /// would silently look like "no cgroup files" and make the fallback cases pass vacuously).
  static func root(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let fixtures = try #require(
      Bundle.module.url(forResource: "Fixtures", withExtension: nil), sourceLocation: sourceLocation)
    let path = fixtures.appendingPathComponent("Parallelism").appendingPathComponent(name).path
    var isDirectory: ObjCBool = false
    try #require(
      FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue,
      "missing fixture tree \(path)", sourceLocation: sourceLocation)
    return path
  }

  static func probe(
    _ name: String, affinity: Int, environment: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> ParallelismReport {
    let root = try root(name, sourceLocation: sourceLocation)
    return Parallelism.probe(root: root, environment: environment, affinityCount: affinity)
  }
}

@Suite("Parallelism probe on fixture cgroup trees")
struct ParallelismProbeTests {
  @Test func v1Nested_parentQuotaBindsUnlimitedLeaf_givesOne() throws {
    let report = try ParallelismFixture.probe("v1-nested", affinity: 8)
    #expect(report.parallelism == 1)
    #expect(report.decidedBy == .cgroupQuota)
    #expect(report.cgroupVersions == [1, 2])
    #expect(report.procFiles.map(\.status) == [.read, .read])
    let v1 = try #require(report.hierarchies.first { $0.version == 1 })
    #expect(v1.line == "1:cpu:/swiftpar-test/child")
    #expect(v1.cgroupPath == "/swiftpar-test/child")
    #expect(v1.mountPoint == "/sys/fs/cgroup/cpu")
    #expect(v1.mountRoot == "/")
    #expect(v1.status == .walked)
    #expect(v1.levels.map(\.outcome) == [.unlimited, .limited, .unlimited])
    #expect(v1.levels[0].directory.hasSuffix("/sys/fs/cgroup/cpu/swiftpar-test/child"))
    #expect(v1.levels[2].directory.hasSuffix("/sys/fs/cgroup/cpu"))
    let files = v1.levels[1].files
    #expect(files.map { $0.path.split(separator: "/").last } == ["cpu.cfs_quota_us", "cpu.cfs_period_us"])
    #expect(files.map(\.value) == ["50000", "100000"])
    let quota = try #require(report.quota)
    #expect(quota.quotaMicroseconds == 50000 && quota.periodMicroseconds == 100000)
    #expect(quota.cpus == 0.5 && quota.ceiling == 1)
    #expect(quota.directory.hasSuffix("/sys/fs/cgroup/cpu/swiftpar-test"))
  }

  @Test func v1Docker_mountRootIsTheContainerCgroup_quotaReadAtMountPoint_roundsUp() throws {
    let report = try ParallelismFixture.probe("v1-docker", affinity: 8)
    #expect(report.parallelism == 2)
    #expect(report.decidedBy == .cgroupQuota)
    // The 0:: line has no cgroup2 mount in this container: only v1 counts as found.
    #expect(report.cgroupVersions == [1])
    let v1 = try #require(report.hierarchies.first { $0.version == 1 })
    #expect(v1.mountRoot == "/docker/abc")
    #expect(v1.mountPoint == "/sys/fs/cgroup/cpu,cpuacct")
    #expect(v1.levels.count == 1)
    #expect(v1.levels.first?.directory.hasSuffix("/sys/fs/cgroup/cpu,cpuacct") == true)
    #expect(report.hierarchies.first { $0.version == 2 }?.status == .noMount)
    let quota = try #require(report.quota)
    #expect(quota.cpus == 1.5 && quota.ceiling == 2)
  }

  @Test func v2_limitOnParent_leafMax_givesCeilingOfParent() throws {
    let report = try ParallelismFixture.probe("v2-parent-limit", affinity: 8)
    #expect(report.parallelism == 2)
    #expect(report.cgroupVersions == [2])
    let v2 = try #require(report.hierarchies.first)
    #expect(v2.cgroupPath == "/kubepods/pod1/ctr")
    #expect(v2.levels.map(\.outcome) == [.unlimited, .limited, .missing, .missing])
    #expect(v2.levels[0].files.first?.value == "max 100000")
    #expect(report.quota?.directory.hasSuffix("/sys/fs/cgroup/kubepods/pod1") == true)
  }

  @Test func v2_malformedLeaf_doesNotHideParentLimit() throws {
    let report = try ParallelismFixture.probe("v2-malformed-leaf-parent-limit", affinity: 8)
    #expect(report.parallelism == 2)
    let levels = try #require(report.hierarchies.first).levels
    #expect(levels.first?.outcome == .ignored)
    #expect(levels.first?.reason != nil)
  }

  @Test func v2CgroupNamespace_quotaAtMountRoot_givesThree() throws {
    let report = try ParallelismFixture.probe("v2-cgroupns", affinity: 8)
    #expect(report.parallelism == 3)
    #expect(report.decidedBy == .cgroupQuota)
    let v2 = try #require(report.hierarchies.first)
    #expect(v2.cgroupPath == "/")
    #expect(v2.levels.count == 1)
    #expect(report.quota?.quotaMicroseconds == 250000)
  }

  @Test func v2DockerWithoutCgroupNamespace_quotaAtMountPoint() throws {
    let report = try ParallelismFixture.probe("v2-docker-no-cgroupns", affinity: 8)
    #expect(report.parallelism == 1)
    #expect(report.hierarchies.first?.mountRoot == "/system.slice/docker-x.scope")
    #expect(report.hierarchies.first?.levels.count == 1)
  }

  @Test func quotaLargerThanAffinity_givesAffinity() throws {
    let report = try ParallelismFixture.probe("v2-cgroupns", affinity: 2)
    #expect(report.parallelism == 2)
    #expect(report.decidedBy == .affinity)
    #expect(report.quota?.ceiling == 3)
  }

  @Test func noProcFiles_givesAffinity() throws {
    let report = try ParallelismFixture.probe("no-proc", affinity: 6)
    #expect(report.parallelism == 6)
    #expect(report.decidedBy == .affinity)
    #expect(report.procFiles.map(\.status) == [.missing, .missing])
    #expect(report.hierarchies.isEmpty)
    #expect(report.cgroupVersions.isEmpty)
    #expect(report.quota == nil)
  }

  @Test(
    "Malformed or no-limit quota values are ignored",
    arguments: [
      ("malformed-v2-max", CgroupLevelReport.Outcome.ignored),
      ("malformed-v2-empty", .ignored),
      ("malformed-v2-zero-period", .ignored),
      ("malformed-v2-garbage", .ignored),
      ("malformed-v1-minus-one", .unlimited),
      ("malformed-v1-zero", .ignored),
    ])
  func malformedQuota_isIgnored_givesAffinity(fixture: String, outcome: CgroupLevelReport.Outcome) throws {
    let report = try ParallelismFixture.probe(fixture, affinity: 4)
    #expect(report.parallelism == 4)
    #expect(report.decidedBy == .affinity)
    #expect(report.quota == nil)
    let hierarchy = try #require(report.hierarchies.first { $0.status == .walked && $0.cgroupPath == "/job" })
    let leaf = try #require(hierarchy.levels.first)
    #expect(leaf.directory.hasSuffix("/job"))
    #expect(leaf.outcome == outcome)
    #expect(leaf.files.first?.status == .read)
  }

  @Test func escapedMountPoint_isUnescapedAndRead() throws {
    let report = try ParallelismFixture.probe("escaped-mount-point", affinity: 4)
    #expect(report.parallelism == 1)
    let v2 = try #require(report.hierarchies.first)
    #expect(v2.mountPoint == "/sys/fs/cgroup/a b")
    #expect(report.quota?.directory.hasSuffix("/sys/fs/cgroup/a b/job") == true)
  }

  @Test func cgroupPathEscapingNamespace_isUnknown_givesAffinity() throws {
    let report = try ParallelismFixture.probe("escapes-namespace", affinity: 4)
    #expect(report.parallelism == 4)
    #expect(report.hierarchies.first?.status == .escapesNamespace)
    #expect(report.hierarchies.first?.levels.isEmpty == true)
    #expect(report.quota == nil)
  }

  @Test func cgroupPathOutsideMountRoot_isUnknown_givesAffinity() throws {
    let report = try ParallelismFixture.probe("outside-mount-root", affinity: 4)
    #expect(report.parallelism == 4)
    #expect(report.hierarchies.first?.status == .outsideMountRoot)
    #expect(report.quota == nil)
  }

  @Test func hybrid_v1AndV2Quotas_takesTightest() throws {
    let report = try ParallelismFixture.probe("hybrid-v1-and-v2", affinity: 8)
    #expect(report.parallelism == 2)
    #expect(report.cgroupVersions == [1, 2])
    #expect(report.hierarchies.map { $0.quota?.ceiling } == [3, 2])
    #expect(report.quota?.directory.hasSuffix("/sys/fs/cgroup/unified/svc") == true)
  }

  @Test func validOverride_winsEvenOverQuota() throws {
    let report = try ParallelismFixture.probe(
      "v2-cgroupns", affinity: 8, environment: [Parallelism.overrideVariable: "5"])
    #expect(report.parallelism == 5)
    #expect(report.decidedBy == .override)
    #expect(report.override?.status == .applied)
    #expect(report.override?.parallelism == 5)
    #expect(report.quota?.ceiling == 3)
  }

  @Test(
    "Bad override values are ignored and reported",
    arguments: [
      ("0", OverrideReport.Status.notPositive),
      ("-3", .notPositive),
      ("abc", .notAnInteger),
      ("", .notAnInteger),
    ])
  func badOverride_isIgnoredAndReported(value: String, status: OverrideReport.Status) throws {
    let report = try ParallelismFixture.probe(
      "v2-cgroupns", affinity: 8, environment: [Parallelism.overrideVariable: value])
    #expect(report.parallelism == 3)
    #expect(report.decidedBy == .cgroupQuota)
    let override = try #require(report.override)
    #expect(override.variable == Parallelism.overrideVariable)
    #expect(override.value == value)
    #expect(override.status == status)
    #expect(override.isIgnored)
    #expect(override.parallelism == nil)
  }

  @Test func unsetOverride_isAbsentFromReport() throws {
    let report = try ParallelismFixture.probe("v2-cgroupns", affinity: 8, environment: [:])
    #expect(report.override == nil)
  }

  @Test func report_roundTripsThroughJSON_withIntegerParallelism() throws {
    let report = try ParallelismFixture.probe("v1-nested", affinity: 8)
    let data = try JSONEncoder().encode(report)
    #expect(try JSONDecoder().decode(ParallelismReport.self, from: data) == report)
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    #expect(object["parallelism"] as? Int == 1)
  }
}

@Suite("Parallelism probe parsing")
struct ParallelismParsingTests {
  @Test func mountInfo_unescapesOctalEscapes() {
    #expect(MountInfo.unescape(#"/a\040b\011c\012d\134e"#) == "/a b\tc\nd\\e")
    // Not an escape: kept as written.
    #expect(MountInfo.unescape(#"/x\09y\04"#) == #"/x\09y\04"#)
  }

  @Test func mountInfo_findsTypeAfterAnyNumberOfOptionalFields() throws {
    let lines = [
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
      "30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw",
      "30 23 0:26 /a /b rw shared:4 master:1 propagate_from:2 - cgroup cgroup rw,cpuacct,cpu",
    ]
    let entries = MountInfo.parse(lines.joined(separator: "\n"))
    #expect(entries.map(\.fileSystemType) == ["cgroup", "cgroup2", "cgroup"])
    #expect(entries.map(\.isCgroupV1CPU) == [true, false, true])
    #expect(entries[2].root == "/a" && entries[2].mountPoint == "/b")
    #expect(MountInfo.parseLine("1 2 3 4 5 6 -") == nil)
    #expect(MountInfo.parseLine("garbage") == nil)
  }

  @Test func mountInfo_cpuacctOrCpusetAloneIsNotTheCpuController() {
    let entries = MountInfo.parse(
      """
      33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
      34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
      """)
    #expect(entries.count == 2)
    #expect(!entries.contains { $0.isCgroupV1CPU })
  }

  @Test func procCgroup_selectsCpuControllerAndUnifiedLines() {
    let memberships = CgroupReader.memberships(
      "9:name=systemd:/\n3:cpuset:/\n2:cpuacct:/a\n1:cpu:/b:c\nbroken\n0::/d\n")
    #expect(
      memberships == [
        .init(version: 1, path: "/b:c", line: "1:cpu:/b:c"),
        .init(version: 2, path: "/d", line: "0::/d"),
      ])
  }

  @Test func cgroupPathComponents_rejectParentReferencesAndRelativePaths() {
    #expect(CgroupReader.components("/a/./b//c") == ["a", "b", "c"])
    #expect(CgroupReader.components("/") == [])
    #expect(CgroupReader.components("/../x") == nil)
    #expect(CgroupReader.components("/a/../../x") == nil)
    #expect(CgroupReader.components("a") == nil)
  }

  @Test func quotaParsing_acceptsOnlyPositiveQuotaAndPeriod() {
    #expect(CgroupQuotaFiles.parseV2("150000 100000\n") == .limited(quota: 150000, period: 100000))
    #expect(CgroupQuotaFiles.parseV2("max 100000") == .unlimited)
    for bad in ["max", "", "100000 0", "garbage", "0 100000", "-5 100000", "1 2 3"] {
      #expect(CgroupQuotaFiles.parseV2(bad).isIgnored, "cpu.max \"\(bad)\"")
    }
    #expect(
      CgroupQuotaFiles.parseV1(quota: "50000\n", period: "100000\n") == .limited(quota: 50000, period: 100000)
    )
    #expect(CgroupQuotaFiles.parseV1(quota: "-1", period: "100000") == .unlimited)
    for (quota, period) in [("0", "100000"), ("-2", "100000"), ("x", "100000"), ("5", "0"), ("5", nil)] {
      #expect(
        CgroupQuotaFiles.parseV1(quota: quota, period: period).isIgnored,
        "v1 quota \(quota) period \(period ?? "missing")")
    }
  }

  @Test func quotaCeiling_roundsUpAndComparesExactly() {
    let half = CPUQuota(quota: 50000, period: 100000, directory: "a")
    let oneAndHalf = CPUQuota(quota: 150000, period: 100000, directory: "b")
    let two = CPUQuota(quota: 200000, period: 100000, directory: "c")
    #expect([half.ceiling, oneAndHalf.ceiling, two.ceiling] == [1, 2, 2] as [Int])
    #expect(CPUQuota(quota: 1, period: 1_000_000, directory: "d").ceiling == 1)
    #expect(half.isTighter(than: oneAndHalf) && !two.isTighter(than: oneAndHalf))
    #expect(!half.isTighter(than: CPUQuota(quota: 5000, period: 10000, directory: "e")))
  }

  @Test func rootPrefix_isJoinedOnceWithoutDoubleSlashes() {
    #expect(ProbeFile.rooted("/proc/self/cgroup", under: "/") == "/proc/self/cgroup")
    #expect(ProbeFile.rooted("/proc/self/cgroup", under: "/tmp/fx/") == "/tmp/fx/proc/self/cgroup")
    #expect(ProbeFile.rooted("/proc/self/cgroup", under: "") == "/proc/self/cgroup")
  }
}
