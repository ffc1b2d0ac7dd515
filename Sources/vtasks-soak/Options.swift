/// The command line of `vtasks-soak`, parsed from `CommandLine.arguments` by hand so that the
/// executable depends on nothing but `VirtualTasks` and `CShims` (valgrind runs it as is).
///
/// Read once by the main thread before any other thread starts; a plain value afterwards.
#if canImport(Glibc)
  import Glibc
#endif

struct Options: Sendable {
  /// Wall-clock length of the soak.
  var seconds: Double = 10
  /// Seeds every random choice (threads interleave freely, so a seed fixes the mix, not the run).
  var seed: UInt64 = UInt64(truncatingIfNeeded: clockSeed())
  /// Plain OS threads that submit work (and race every shutdown).
  var submitters = 4
  /// Mean life of one manager; each lives 0.5x to 1.5x of it.
  var epochSeconds: Double = 2.5
  /// Submitters pause while this many payloads are alive (bounds memory; keeps queues busy).
  var maxInFlight = 3000
  /// Probability that a manager is retired by dropping its last reference instead of shutdown.
  var dropRate = 0.15
  /// A shutdown, a join or a drain that takes longer than this is reported as a hang (exit 3).
  var hangTimeout: Double = 60
  /// After the last shutdown: how long threads, fds and payloads may take to return to baseline
  /// (Dispatch retires idle global-executor threads after about 5 s).
  var settleTimeout: Double = 20
  /// No progress lines on stderr.
  var quiet = false

  static let usage = """
    usage: vtasks-soak [--seconds N] [--seed N] [--submitters N] [--epoch-seconds N]
                       [--max-in-flight N] [--drop-rate P] [--hang-timeout N]
                       [--settle-timeout N] [--quiet]
    A mixed load on ThreadPoolTaskManager (shared and dedicated tasks, sleeps, cancellations,
    fd readiness waits, spawnAwait, spawnAndBlockOn) with a new manager every few seconds, each
    shut down (or dropped) with work in flight and submits racing it. Prints a ledger; exits 0
    when it balances, 1 when it does not, 3 on a hang, 2 on bad usage.
    """

  struct UsageError: Error {
    let message: String
  }

  static func parse(_ arguments: [String]) throws(UsageError) -> Options {
    var options = Options()
    var i = 1
    func value(_ name: String) throws(UsageError) -> String {
      i += 1
      guard i < arguments.count else { throw UsageError(message: "\(name) needs a value") }
      return arguments[i]
    }
    func number(_ name: String, _ text: String, min: Double, max: Double) throws(UsageError) -> Double {
      guard let v = Double(text), v.isFinite, v >= min, v <= max else {
        throw UsageError(message: "\(name): '\(text)' is not a number in \(min)...\(max)")
      }
      return v
    }
    while i < arguments.count {
      let argument = arguments[i]
      // Accept both "--name value" and "--name=value".
      var name = argument
      var inline: String?
      if let eq = argument.firstIndex(of: "="), argument.hasPrefix("--") {
        name = String(argument[..<eq])
        inline = String(argument[argument.index(after: eq)...])
      }
      func next() throws(UsageError) -> String {
        if let inline { return inline }
        return try value(name)
      }
      switch name {
      case "--seconds": options.seconds = try number(name, next(), min: 0.1, max: 7 * 86400)
      case "--seed":
        let text = try next()
        guard let s = UInt64(text) else { throw UsageError(message: "--seed: '\(text)' is not a UInt64") }
        options.seed = s
      case "--submitters": options.submitters = Int(try number(name, next(), min: 1, max: 64))
      case "--epoch-seconds": options.epochSeconds = try number(name, next(), min: 0.05, max: 3600)
      case "--max-in-flight": options.maxInFlight = Int(try number(name, next(), min: 10, max: 1_000_000))
      case "--drop-rate": options.dropRate = try number(name, next(), min: 0, max: 1)
      case "--hang-timeout": options.hangTimeout = try number(name, next(), min: 1, max: 86400)
      case "--settle-timeout": options.settleTimeout = try number(name, next(), min: 0, max: 3600)
      case "--quiet", "-q": options.quiet = true
      case "--help", "-h": throw UsageError(message: "")
      default: throw UsageError(message: "unknown argument '\(argument)'")
      }
      i += 1
    }
    return options
  }
}

/// A seed from the clock and pid when none is given (printed, so a run can be repeated).
private func clockSeed() -> Int {
  var ts = timespec()
  clock_gettime(CLOCK_REALTIME, &ts)
  return ts.tv_nsec ^ (ts.tv_sec << 20) ^ Int(getpid())
}
