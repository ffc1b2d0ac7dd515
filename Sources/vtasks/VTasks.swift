/// `vtasks`: the command-line face of the library (DESIGN.md section 10). Every error is one
/// line on standard error (`vtasks: error: ...`) with a non-zero exit status: 64 for a bad
/// option or argument, 1 for a failure, the program's own status for `run`.
import ArgumentParser
import Foundation

@main
struct VTasks: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vtasks",
    abstract: "Run work on swift-virtual-tasks pools: probe parallelism, run wasm programs.",
    discussion: """
      Standard output carries results only (text, or one JSON object with --json); progress \
      and errors go to standard error. A progress line appears on work longer than a second \
      when standard error is a terminal (VTASKS_PROGRESS=1 forces it, =0 turns it off).

      Examples:
        vtasks                             # same as vtasks probe
        vtasks probe --json
        vtasks run                         # the embedded wasm example
        vtasks run program.wasm arg1 arg2
        vtasks bench --quick               # the benchmark table (builds Benchmarks/)
        vtasks help run
      """,
    subcommands: [ProbeCommand.self, RunCommand.self, BenchCommand.self],
    defaultSubcommand: ProbeCommand.self
  )

  /// Parses and runs like ArgumentParser's own `main()`, but prints an error as one line (with a
  /// hint to `--help`) instead of an error, the usage and a hint on three.
  static func main() async {
    do {
      var command = try parseAsRoot()
      if var asyncCommand = command as? any AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch {
      let code = exitCode(for: error)
      if code == .success { exit(withError: error) }  // --help and friends print as usual
      let message = message(for: error)
      if !message.isEmpty {
        let subcommand = configuration.subcommands.compactMap { $0.configuration.commandName }.first {
          CommandLine.arguments.dropFirst().contains($0)
        }
        if code == .validationFailure {
          let trimmed = message.hasSuffix(".") ? String(message.dropLast()) : message
          Terminal.printError(trimmed + " (see vtasks \(subcommand.map { "\($0) " } ?? "")--help)")
        } else {
          Terminal.printError(message)
        }
      }
      Foundation.exit(code.rawValue)
    }
  }
}
