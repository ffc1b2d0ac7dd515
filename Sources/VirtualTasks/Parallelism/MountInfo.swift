/// Parses `/proc/self/mountinfo` into the cgroup mounts the probe needs: mount root, mount
/// point (octal escapes undone), filesystem type and super options. Pure; any thread may call it.
///
/// A line reads `id parent maj:min root mountpoint options [optional fields...] - fstype source
/// superoptions` (proc(5)). The optional fields vary in number (`shared:4 master:1`), so the
/// fields after them are found by the lone `-` separator, never by position. The kernel escapes
/// space, tab, newline and backslash in paths as `\040`, `\011`, `\012` and `\134`.
struct MountInfoEntry: Equatable {
  /// The directory of the mounted filesystem that appears at `mountPoint` (field 4).
  var root: String
  /// Where it is mounted, unescaped (field 5).
  var mountPoint: String
  var fileSystemType: String
  /// Super-block options, comma separated; for cgroup v1 they name the controllers.
  var superOptions: [Substring]
  /// The line as the kernel wrote it, for the report.
  var line: String

  /// Whether this is a cgroup v1 hierarchy carrying the `cpu` controller (alone or co-mounted
  /// with `cpuacct`); `cpuacct` or `cpuset` alone does not count.
  var isCgroupV1CPU: Bool { fileSystemType == "cgroup" && superOptions.contains("cpu") }

  var isCgroupV2: Bool { fileSystemType == "cgroup2" }
}

enum MountInfo {
  /// Every well-formed line of `text`; malformed lines are skipped.
  static func parse(_ text: String) -> [MountInfoEntry] {
    text.split(separator: "\n").compactMap { parseLine($0) }
  }

  static func parseLine(_ line: Substring) -> MountInfoEntry? {
    let fields = line.split(separator: " ")
    // Six fixed fields, then optional ones, then "-", fstype and source (super options may be
    // empty on odd filesystems).
    guard fields.count >= 9,
      let separator = fields[6...].firstIndex(of: "-"),
      separator + 1 < fields.count
    else { return nil }
    let options = separator + 3 < fields.count ? fields[separator + 3] : ""
    return MountInfoEntry(
      root: unescape(fields[3]),
      mountPoint: unescape(fields[4]),
      fileSystemType: String(fields[separator + 1]),
      superOptions: options.split(separator: ","),
      line: String(line)
    )
  }

  /// Undoes the kernel's `\ooo` octal escapes; anything else is kept as written.
  static func unescape(_ field: Substring) -> String {
    let bytes = Array(field.utf8)
    guard bytes.contains(UInt8(ascii: "\\")) else { return String(field) }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
      if bytes[index] == UInt8(ascii: "\\"), index + 3 < bytes.count,
        let value = octal(bytes[(index + 1)...(index + 3)])
      {
        out.append(value)
        index += 4
      } else {
        out.append(bytes[index])
        index += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  private static func octal(_ digits: ArraySlice<UInt8>) -> UInt8? {
    var value = 0
    for digit in digits {
      guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "7") else { return nil }
      value = value * 8 + Int(digit - UInt8(ascii: "0"))
    }
    return value <= 0xFF ? UInt8(value) : nil
  }
}
