import Testing
@testable import VirtualTasks

@Test func parallelismIsPositive() {
  #expect(Parallelism.available() >= 1)
}
