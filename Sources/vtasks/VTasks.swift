import ArgumentParser

@main
struct VTasks: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vtasks",
    abstract: "Run work on swift-virtual-tasks pools: probe parallelism, run wasm programs.",
    subcommands: [ProbeCommand.self, RunCommand.self],
    defaultSubcommand: ProbeCommand.self
  )
}
