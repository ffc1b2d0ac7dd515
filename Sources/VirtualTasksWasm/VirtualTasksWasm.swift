import VirtualTasks
import WasmKit
