import CShims
import Glibc
import Testing

@testable import VirtualTasks

@Test func parallelism_isPositive_andNeverMoreThanTheAffinityMask() {
  let p = Parallelism.available()
  #expect(p >= 1)
  // Without the override, the answer can only narrow the CPUs this process may run on.
  if getenv("VIRTUAL_TASKS_PARALLELISM") == nil {
    #expect(p <= Int(vt_affinity_count()))
  }
}
