/// `vtasks-soak`: a time-boxed mixed load on `ThreadPoolTaskManager` that proves nothing is lost
/// (DESIGN.md section 7, issue 6). See `Soak.swift` for the protocol and `Ledger.swift` for the
/// rules the printed ledger must satisfy.
///
/// Exit status: 0 the ledger balances, 1 it does not, 2 bad usage, 3 a hang.
#if canImport(Glibc)
  import Glibc
#endif

@main
enum SoakMain {
  static func main() {
    let options: Options
    do throws(Options.UsageError) {
      options = try Options.parse(CommandLine.arguments)
    } catch {
      if !error.message.isEmpty { printErr("vtasks-soak: \(error.message)") }
      printErr(Options.usage)
      exit(error.message.isEmpty ? 0 : 2)
    }
    let status = Soak(options: options).run()
    fflush(nil)
    exit(status)
  }
}
