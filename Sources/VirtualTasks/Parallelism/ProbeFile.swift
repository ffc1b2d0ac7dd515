/// Small whole-file reads for the parallelism probe: `/proc` and cgroup pseudo-files, never
/// more than a few megabytes, never throwing. Any thread may call it.
#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// One file the probe tried to read, as it appears in the report.
public struct ProbeFileRead: Sendable, Codable, Equatable {
  public enum Status: String, Sendable, Codable {
    /// The file was read; `value` holds its trimmed contents (omitted for large files).
    case read
    /// The file does not exist (ENOENT, ENOTDIR).
    case missing
    /// The file exists but could not be read; `error` says why.
    case unreadable
  }

  /// The path as read, `root` prefix included.
  public var path: String
  public var status: Status
  /// Trimmed contents of a read file, when small enough to be worth showing.
  public var value: String?
  /// The `errno` description when the file could not be read.
  public var error: String?

  public init(path: String, status: Status, value: String? = nil, error: String? = nil) {
    self.path = path
    self.status = status
    self.value = value
    self.error = error
  }
}

enum ProbeFile {
  /// Upper bound on what one read keeps: mountinfo on a busy host is tens of kilobytes.
  static let sizeLimit = 4 << 20

  /// Reads `path` whole. The contents are returned untrimmed; `record` describes the attempt,
  /// with the trimmed contents as its value when `keepValue` is set.
  static func load(_ path: String, keepValue: Bool) -> (contents: String?, record: ProbeFileRead) {
    switch readBytes(path) {
    case .success(let bytes):
      let contents = String(decoding: bytes, as: UTF8.self)
      let value = keepValue ? trimmed(contents) : nil
      return (contents, ProbeFileRead(path: path, status: .read, value: value))
    case .failure(let failure):
      if failure.errno == ENOENT || failure.errno == ENOTDIR {
        return (nil, ProbeFileRead(path: path, status: .missing))
      }
      return (nil, ProbeFileRead(path: path, status: .unreadable, error: failure.description))
    }
  }

  struct Failure: Error, CustomStringConvertible {
    var errno: Int32
    var description: String {
      guard let message = strerror(errno) else { return "errno \(errno)" }
      return "\(String(cString: message)) (errno \(errno))"
    }
  }

  private static func readBytes(_ path: String) -> Result<[UInt8], Failure> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return .failure(Failure(errno: errno)) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < sizeLimit {
      let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        return .failure(Failure(errno: errno))
      }
      if count == 0 { break }
      bytes.append(contentsOf: chunk[0..<count])
    }
    return .success(bytes)
  }

  /// `text` without leading and trailing ASCII whitespace (spaces, tabs, newlines).
  static func trimmed(_ text: some StringProtocol) -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard let first = text.firstIndex(where: { !isSpace($0) }),
      let last = text.lastIndex(where: { !isSpace($0) })
    else { return "" }
    return String(text[first...last])
  }

  /// `name` inside `directory`, without doubling a trailing slash.
  static func join(_ directory: String, _ name: some StringProtocol) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
  }

  /// `path` (absolute) under the probe root: `/` and the empty root leave it unchanged.
  static func rooted(_ path: String, under root: String) -> String {
    var base = Substring(root)
    while base.hasSuffix("/") { base = base.dropLast() }
    if base.isEmpty { return path }
    return path.hasPrefix("/") ? base + path : base + "/" + path
  }
}
