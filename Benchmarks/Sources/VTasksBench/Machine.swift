/// What the numbers were measured on: date, kernel, CPU, thread counts, and how busy the machine
/// was (load average, other compilers running).
import Foundation
import VirtualTasks

struct Machine: Codable, Sendable {
  var date: String
  var kernel: String
  var cpuModel: String
  var onlineCPUs: Int
  /// `Parallelism.available()`: the thread count given to every peer that takes one.
  var threads: Int
  var loadAverageStart: String
  var loadAverageEnd: String
  /// The most swift-frontend / swift-build / clang processes seen at any cell start.
  var compilersSeen: Int
  var swiftVersion: String
  /// Free text from `--note` (the Makefile passes the library's commit).
  var note = ""

  static func capture() -> Machine {
    var uts = utsname()
    uname(&uts)
    let release = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let machine = withUnsafeBytes(of: &uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let model =
      cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
      .map {
        $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
      }
      ?? "unknown"
    #if compiler(>=6.3)
      let swift = "6.3 or later"
    #else
      let swift = "before 6.3"
    #endif
    return Machine(
      date: ISO8601DateFormatter().string(from: Date()),
      kernel: "Linux \(release) \(machine)",
      cpuModel: model,
      onlineCPUs: ProcessInfo.processInfo.activeProcessorCount,
      threads: Parallelism.available(),
      loadAverageStart: loadAverage(),
      loadAverageEnd: "",
      compilersSeen: compilerProcesses(),
      swiftVersion: swift)
  }

  static func loadAverage() -> String {
    let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return text.split(separator: " ").prefix(3).joined(separator: " ")
  }

  /// Compiler processes running on the machine now (a proxy for the noise in this run).
  static func compilerProcesses() -> Int {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
    var count = 0
    for entry in entries where entry.first?.isNumber == true {
      guard let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8) else { continue }
      let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
      if name.hasPrefix("swift-frontend") || name.hasPrefix("swift-build") || name == "clang" || name == "ld"
      {
        count += 1
      }
    }
    return count
  }
}
