import Testing
import VirtualTasksWasm

@Test func wasmTargetLinks() {}
