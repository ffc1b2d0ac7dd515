import ArgumentParser
import Foundation
import VirtualTasks

struct ProbeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "probe",
    abstract: "Show how the available parallelism was decided."
  )

  @Flag(help: "Print one JSON object.")
  var json = false

  func run() throws {
    let report = Parallelism.probe()
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
    } else {
      print("parallelism: \(report.parallelism)")
      print("affinity: \(report.affinityCount)")
    }
  }
}
