/// CPU quotas of one cgroup directory: parsing cgroup v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`
/// and cgroup v2 `cpu.max`, and the rounding that turns a quota into a thread count. Pure
/// parsing plus file reads through ``ProbeFile``; any thread may call it.

/// A CPU bandwidth limit: `quota` microseconds of CPU time per `period` microseconds.
public struct CPUQuota: Sendable, Codable, Equatable {
  public var quotaMicroseconds: Int
  public var periodMicroseconds: Int
  /// `quota / period`: how many CPUs' worth of time the cgroup may use (1.5 for 150000/100000).
  public var cpus: Double
  /// `cpus` rounded up. Rounding up keeps a 1.5 CPU budget from being served by one thread
  /// (which would leave a third of it unused); the kernel throttles the surplus thread.
  public var ceiling: Int
  /// The cgroup directory that set it, `root` prefix included.
  public var directory: String

  init(quota: Int, period: Int, directory: String) {
    precondition(quota > 0 && period > 0)
    self.quotaMicroseconds = quota
    self.periodMicroseconds = period
    self.cpus = Double(quota) / Double(period)
    self.ceiling = quota / period + (quota % period == 0 ? 0 : 1)
    self.directory = directory
  }

  /// Whether `self` allows less CPU time than `other` (exact, no floating point).
  func isTighter(than other: CPUQuota) -> Bool {
    let (lhs, lhsOverflow) = quotaMicroseconds.multipliedReportingOverflow(by: other.periodMicroseconds)
    let (rhs, rhsOverflow) = other.quotaMicroseconds.multipliedReportingOverflow(by: periodMicroseconds)
    if lhsOverflow || rhsOverflow { return cpus < other.cpus }
    return lhs < rhs
  }
}

/// What one cgroup directory's quota files said.
public struct CgroupLevelReport: Sendable, Codable, Equatable {
  public enum Outcome: String, Sendable, Codable {
    /// A positive quota over a positive period.
    case limited
    /// An explicit "no limit": v1 quota `-1`, v2 `max PERIOD`.
    case unlimited
    /// No quota file here (the root cgroup, or a controller not enabled).
    case missing
    /// A file was there but its value made no sense; `reason` says what was wrong.
    case ignored
  }

  /// The cgroup directory, `root` prefix included.
  public var directory: String
  public var files: [ProbeFileRead]
  public var outcome: Outcome
  public var reason: String?
  public var quota: CPUQuota?
}

enum CgroupQuotaFiles {
  static let v1Quota = "cpu.cfs_quota_us"
  static let v1Period = "cpu.cfs_period_us"
  static let v2Max = "cpu.max"

  /// Reads the v1 pair in `directory`: quota `-1` is no limit, `0`, other negatives and
  /// non-integers are ignored, as is a limit without a positive period.
  static func readV1(directory: String) -> CgroupLevelReport {
    let (quotaText, quotaRecord) = ProbeFile.load(ProbeFile.join(directory, v1Quota), keepValue: true)
    guard let quotaText else {
      return CgroupLevelReport(directory: directory, files: [quotaRecord], outcome: .missing)
    }
    let (periodText, periodRecord) = ProbeFile.load(ProbeFile.join(directory, v1Period), keepValue: true)
    var level = CgroupLevelReport(
      directory: directory, files: [quotaRecord, periodRecord], outcome: .ignored)
    switch parseV1(quota: quotaText, period: periodText) {
    case .limited(let quota, let period):
      level.outcome = .limited
      level.quota = CPUQuota(quota: quota, period: period, directory: directory)
    case .unlimited:
      level.outcome = .unlimited
    case .ignored(let reason):
      level.reason = reason
    }
    return level
  }

  /// Reads v2 `cpu.max` in `directory`: `max PERIOD` is no limit, `QUOTA PERIOD` with both
  /// positive is a limit, anything else (`max` alone, empty, `100000 0`, `garbage`) is ignored.
  static func readV2(directory: String) -> CgroupLevelReport {
    let (text, record) = ProbeFile.load(ProbeFile.join(directory, v2Max), keepValue: true)
    guard let text else {
      return CgroupLevelReport(directory: directory, files: [record], outcome: .missing)
    }
    var level = CgroupLevelReport(directory: directory, files: [record], outcome: .ignored)
    switch parseV2(text) {
    case .limited(let quota, let period):
      level.outcome = .limited
      level.quota = CPUQuota(quota: quota, period: period, directory: directory)
    case .unlimited:
      level.outcome = .unlimited
    case .ignored(let reason):
      level.reason = reason
    }
    return level
  }

  enum Parsed: Equatable {
    case limited(quota: Int, period: Int)
    case unlimited
    case ignored(String)

    var isIgnored: Bool {
      if case .ignored = self { return true }
      return false
    }
  }

  static func parseV1(quota quotaText: String, period periodText: String?) -> Parsed {
    let quotaValue = ProbeFile.trimmed(quotaText)
    guard let quota = Int(quotaValue) else {
      return .ignored("\(v1Quota) is not an integer: \"\(quotaValue)\"")
    }
    if quota == -1 { return .unlimited }
    guard quota > 0 else { return .ignored("\(v1Quota) must be positive or -1, got \(quota)") }
    guard let periodText else { return .ignored("\(v1Period) is missing") }
    let periodValue = ProbeFile.trimmed(periodText)
    guard let period = Int(periodValue), period > 0 else {
      return .ignored("\(v1Period) is not a positive integer: \"\(periodValue)\"")
    }
    return .limited(quota: quota, period: period)
  }

  static func parseV2(_ text: String) -> Parsed {
    let value = ProbeFile.trimmed(text)
    let fields = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
    guard fields.count == 2 else {
      return .ignored("\(v2Max) should be \"QUOTA PERIOD\" or \"max PERIOD\", got \"\(value)\"")
    }
    guard let period = Int(fields[1]), period > 0 else {
      return .ignored("\(v2Max) period is not a positive integer: \"\(fields[1])\"")
    }
    if fields[0] == "max" { return .unlimited }
    guard let quota = Int(fields[0]), quota > 0 else {
      return .ignored("\(v2Max) quota is not a positive integer or max: \"\(fields[0])\"")
    }
    return .limited(quota: quota, period: period)
  }
}
