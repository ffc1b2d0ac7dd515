/// The one place that knows what WebAssembly threads need from WasmKit: the `.threads` feature,
/// enabled alike in the text assembler, the binary parser and the engine.
///
/// Pure functions, callable from any thread.
import VirtualTasks
import WAT
import WasmKit
import WasmParser

public enum WasmThreads {
  /// WasmKit's default features plus `.threads` (shared memory, atomics, wait/notify).
  public static let features: WasmFeatureSet = WasmFeatureSet.default.union(.threads)

  /// An engine configuration for guest threads: `features`, and WasmKit's platform defaults
  /// (direct threading, mprotect bounds checks: shared memories require the latter).
  public static func engineConfiguration() -> EngineConfiguration {
    EngineConfiguration(features: features)
  }

  /// An engine for guest threads; one per program is enough (it is Sendable and shared).
  public static func makeEngine() -> Engine {
    Engine(configuration: engineConfiguration())
  }

  /// Parses a binary module with `features`. An invalid binary is `WasiThreadError.initFailed`.
  public static func parseModule(wasm bytes: [UInt8]) throws(WasiThreadError) -> Module {
    do {
      return try parseWasm(bytes: bytes, features: features)
    } catch {
      throw .initFailed("invalid module: \(oneLine(error))")
    }
  }

  /// Assembles and parses a text module with `features`. Errors are `WasiThreadError.initFailed`.
  public static func parseModule(wat text: String) throws(WasiThreadError) -> Module {
    let bytes: [UInt8]
    do {
      bytes = try wat2wasm(text, features: features)
    } catch {
      throw .initFailed("invalid text module: \(oneLine(error))")
    }
    return try parseModule(wasm: bytes)
  }
}
