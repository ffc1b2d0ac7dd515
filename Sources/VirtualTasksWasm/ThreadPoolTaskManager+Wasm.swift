/// `ThreadPoolTaskManager` runs WebAssembly: its `taskWasm` is the blocking-pool machinery of
/// ``VirtualWasmTaskManager/taskWasmOnBlockingPool(_:)``, so every guest thread runs on a
/// "<prefix>-b<N>" thread, reused across guest threads and retired when idle.
///
/// Any thread may call it; `taskWasm` blocks its caller until setup finished, so call it from a
/// thread that may block (a guest thread, a host thread), not from one of the manager's workers.
import VirtualTasks

///
/// Guest threads start at once or not at all (`taskDedicatedNow`): at `maxBlockingThreads` the
/// spawn fails with `.resourceExhausted` (a negative result to the guest) instead of queueing
/// behind threads that may be waiting for it.
extension ThreadPoolTaskManager: VirtualWasmTaskManager {
  public func taskWasm(_ task: TaskWasm) throws(WasiThreadError) {
    try taskWasmOnBlockingPool(task) { (body) throws(WasiThreadError) in try taskDedicatedNow(body) }
  }
}
