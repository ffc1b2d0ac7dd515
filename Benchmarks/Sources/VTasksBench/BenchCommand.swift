/// `vtasks-bench`: W1..W8 of DESIGN.md section 8 against this library, SwiftNIO, Dispatch and
/// Swift's default executor, plus two floors, and WA1/WA2 (guest threads) against WasmKit's
/// `WASIThreads`, in one process; prints the table and writes it to `<out>/<name>.md` and
/// `<out>/<name>.json`.
import Dispatch
import Foundation
import VirtualTasks

struct Options {
  var quick = false
  var runs = 3
  var only: Set<String> = []
  var peers: Set<Peer> = []
  var outDirectory: String?
  var name: String?
  var write = true
  var note: String?

  static let usage = """
    usage: vtasks-bench [--quick] [--runs N] [--only W1,WA1,...] [--peers vtasks,nio,...] [--out DIR]
                        [--name NAME] [--no-write] [--note TEXT]
      --quick      reduced sizes (results/quick.*)
      --runs N     runs per cell (default 3); the median is reported with min..max
      --only IDS   run only these workloads
      --peers IDS  run only these columns (vtasks, nio, dispatch, swift, wasmkit, c-timerfd, inline,
                   bare-continuations); the table leaves the others out
      --out DIR    where to write NAME.md and NAME.json (default Benchmarks/results, or results
                   when run from inside Benchmarks/)
      --name NAME  file name stem (default latest, or quick with --quick)
      --no-write   print the table only
      --note TEXT  recorded with the results (e.g. the library's commit)
    """

  static func parse(_ arguments: [String]) -> Options {
    var o = Options()
    var it = arguments.makeIterator()
    func value(_ flag: String) -> String {
      guard let v = it.next() else { fail("\(flag) needs a value") }
      return v
    }
    while let a = it.next() {
      switch a {
      case "--quick": o.quick = true
      case "--runs":
        guard let n = Int(value(a)), n >= 1 else { fail("--runs needs a positive number") }
        o.runs = n
      case "--only": o.only = Set(value(a).uppercased().split(separator: ",").map(String.init))
      case "--peers":
        for name in value(a).lowercased().split(separator: ",") {
          guard let peer = Peer(rawValue: String(name)) else { fail("--peers: no peer named \(name)") }
          o.peers.insert(peer)
        }
      case "--out": o.outDirectory = value(a)
      case "--name": o.name = value(a)
      case "--no-write": o.write = false
      case "--note": o.note = value(a)
      case "-h", "--help":
        print(usage)
        exit(0)
      default: fail("unknown argument \(a)")
      }
    }
    return o
  }

  static func fail(_ message: String) -> Never {
    writeStderr("vtasks-bench: \(message)\n\(usage)\n")
    exit(2)
  }
}

@main
enum BenchCommand {
  static func main() {
    if CommandLine.arguments.dropFirst().first == IdleChild.flag { IdleChild.run() }
    let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
    let sizes = options.quick ? Sizes.quick : Sizes.full
    let workloads = (TaskWorkloads.all + TimerWorkloads.all + WasmWorkloads.all).filter {
      options.only.isEmpty || options.only.contains($0.id.uppercased())
    }
    if workloads.isEmpty { Options.fail("--only matched no workload (W1..W8, W5s, W5c, W7s, WA1, WA2)") }
    var machine = Machine.capture()
    machine.note = options.note ?? ""
    let peers: PeerSet
    do {
      peers = try PeerSet(threads: machine.threads)
    } catch {
      Options.fail("cannot start the executors: \(error)")
    }
    writeStderr(
      "vtasks-bench: \(workloads.count) workloads, \(options.runs) runs per cell, \(machine.threads) threads"
        + "\(options.quick ? ", quick sizes" : "")\n")
    let manager = peers.manager
    Diagnostics.describe = { "vtasks metrics: \(manager.metrics())" }
    let harness = Harness(
      peers: peers, sizes: sizes, runs: options.runs, workloads: workloads, onlyPeers: options.peers)
    let results = harness.run()
    machine.loadAverageEnd = Machine.loadAverage()
    machine.compilersSeen = max(machine.compilersSeen, harness.maxCompilersSeen)

    let done = DispatchSemaphore(value: 0)
    Task.detached {
      await peers.shutdown()
      done.signal()
    }
    done.wait()

    let report = Report(
      machine: machine, quick: options.quick, runs: options.runs, sizes: sizes, results: results)
    print(report.plainTable)
    print(
      "\nload average \(machine.loadAverageStart) -> \(machine.loadAverageEnd); "
        + "up to \(machine.compilersSeen) compiler processes running alongside")
    guard options.write else { return }
    let directory = options.outDirectory ?? defaultOutDirectory()
    let stem = options.name ?? (options.quick ? "quick" : "latest")
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      try report.markdown.write(toFile: "\(directory)/\(stem).md", atomically: true, encoding: .utf8)
      try report.json().write(to: URL(fileURLWithPath: "\(directory)/\(stem).json"))
      print("wrote \(directory)/\(stem).md and \(directory)/\(stem).json")
    } catch {
      writeStderr("vtasks-bench: cannot write results: \(error)\n")
      exit(1)
    }
  }

  static func defaultOutDirectory() -> String {
    let fm = FileManager.default
    if fm.fileExists(atPath: "Benchmarks/Package.swift") { return "Benchmarks/results" }
    return "results"
  }
}

/// W8's child process: `vtasks-bench --idle-child PEER THREADS SLEEPS WINDOW_NS` measures one
/// peer's idle CPU alone (`TimerWorkloads.idleCPU`) and prints it on stdout.
enum IdleChild {
  static let flag = "--idle-child"

  /// Runs the child for `peer` and returns what it printed; a failed child ends the run.
  static func measure(_ peer: Peer, threads: Int, sizes: Sizes) -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    process.arguments = [
      flag, peer.rawValue, String(threads), String(sizes.idleSleeps), String(sizes.idleWindowNanos),
    ]
    let output = Pipe()
    process.standardOutput = output
    do {
      try process.run()
    } catch {
      fatalError("W8: cannot start the child process: \(error)")
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0, let value = Double(text) else {
      fatalError("W8 \(peer): the child exited with \(process.terminationStatus), printing '\(text)'")
    }
    return value
  }

  static func run() -> Never {
    let a = Array(CommandLine.arguments.dropFirst(2))
    guard a.count == 4, let peer = Peer(rawValue: a[0]), let threads = Int(a[1]), let n = Int(a[2]),
      let window = Int64(a[3])
    else {
      writeStderr("vtasks-bench: usage: \(flag) PEER THREADS SLEEPS WINDOW_NS\n")
      exit(2)
    }
    var sizes = Sizes.full
    sizes.idleSleeps = n
    sizes.idleWindowNanos = window
    do {
      print(try TimerWorkloads.idleCPU(peer, threads: threads, sizes: sizes))
      exit(0)
    } catch {
      writeStderr("vtasks-bench: W8 \(peer): \(error)\n")
      exit(1)
    }
  }
}
