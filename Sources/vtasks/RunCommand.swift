import ArgumentParser
import VirtualTasks

struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run a wasm32-wasi-threads program on the pools."
  )

  func run() async throws {
    throw ValidationError("vtasks run is not available yet")
  }
}
