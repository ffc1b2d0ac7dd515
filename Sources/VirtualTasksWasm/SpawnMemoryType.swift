/// How a new ``TaskWasm`` instance gets its linear memory, and the default construction behind
/// ``VirtualWasmTaskManager/buildMemory(store:spawnType:)``.
///
/// The construction runs on the destination thread, in the task's new `Store` (a WasmKit
/// `Memory` belongs to one store and is not Sendable); only Sendable sources cross threads: a
/// `MemoryType`, a `SharedMemory` backing, or a `MemoryImage` byte snapshot.
import VirtualTasks
import WasmKit

/// How the memory of a new instance is obtained (wasmer's `SpawnMemoryType`).
public enum SpawnMemoryType: Sendable {
  /// No memory is built: the module defines its own (or imports none). `buildMemory` returns nil.
  case createMemory
  /// A new memory of this type, forced shared; a missing maximum becomes the wasm32 maximum
  /// (65536 pages), as shared memories require one.
  case createMemoryOfType(MemoryType)
  /// The same bytes in the new store: a store-local wrapper around a shared backing (guest
  /// threads, resumed threads).
  case shareMemory(SharedMemory)
  /// An independent memory holding a copy of the image (fork). The copy is complete before
  /// `taskWasm` returns, because setup finishes before it returns.
  case copyMemory(MemoryImage)
}

/// A Sendable snapshot of a linear memory: its type and its bytes.
public struct MemoryImage: Sendable {
  public let type: MemoryType
  public let bytes: [UInt8]

  public init(type: MemoryType, bytes: [UInt8]) {
    self.type = type
    self.bytes = bytes
  }

  /// Snapshots `memory`, on the thread that owns its store. For a shared memory that other
  /// threads write concurrently, the snapshot is as consistent as a `fork` is.
  public init(copying memory: Memory) {
    self.type = memory.type
    self.bytes = memory.withUnsafeBufferPointer(offset: 0, count: memory.byteCount) { Array($0) }
  }
}

/// The page size of WebAssembly linear memory.
let wasmPageSize = 65_536
/// The largest wasm32 memory, in pages.
let wasm32MaxPages: UInt64 = 65_536

extension SpawnMemoryType {
  /// The default construction: see each case. Failures are ``WasiThreadError/memoryCreateFailed(_:)``.
  func makeMemory(in store: Store) throws(WasiThreadError) -> Memory? {
    switch self {
    case .createMemory:
      return nil
    case .createMemoryOfType(var type):
      guard !type.isMemory64 else {
        throw .memoryCreateFailed("a shared memory must be a wasm32 memory")
      }
      type.shared = true
      if type.max == nil { type.max = wasm32MaxPages }
      return try Self.newMemory(in: store, type: type)
    case .shareMemory(let shared):
      guard shared.type.shared else { throw .memoryCreateFailed("the memory to share is not shared") }
      return Memory(store: store, sharedMemory: shared)
    case .copyMemory(let image):
      var type = image.type
      let pages = UInt64((image.bytes.count + wasmPageSize - 1) / wasmPageSize)
      type.min = Swift.max(type.min, pages)
      if let max = type.max, max < type.min {
        throw .memoryCreateFailed("the image (\(pages) pages) exceeds the memory's maximum (\(max) pages)")
      }
      let memory = try Self.newMemory(in: store, type: type)
      guard memory.byteCount >= image.bytes.count else {
        throw .memoryCreateFailed("the new memory is smaller than the image")
      }
      memory.withUnsafeMutableBufferPointer(offset: 0, count: image.bytes.count) { target in
        image.bytes.withUnsafeBytes { target.copyMemory(from: $0) }
      }
      return memory
    }
  }

  private static func newMemory(in store: Store, type: MemoryType) throws(WasiThreadError) -> Memory {
    do {
      return try Memory(store: store, type: type)
    } catch {
      throw .memoryCreateFailed(oneLine(error))
    }
  }
}

/// The first line of an error's description (WasmKit traps append a multi-line backtrace).
func oneLine(_ error: any Error) -> String {
  let text = String(describing: error)
  return text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text
}
