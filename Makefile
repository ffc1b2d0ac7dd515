# The two set-up commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
SWIFT ?= swift
JOBS ?=

.PHONY: build run test test-tsan probe clean bench bench-quick bench-check

build:
	$(SWIFT) build $(JOBS)

run:
	$(SWIFT) build --product vtasks $(JOBS)
	$$($(SWIFT) build --show-bin-path)/vtasks probe
	$$($(SWIFT) build --show-bin-path)/vtasks run

# Exit-test children append the check that failed to $(CHILD_FAILURES) (see `require` in the
# tests' TestSupport); it is printed when the run fails.
CHILD_FAILURES := $(CURDIR)/.build/exit-test-failures.log
test:
	$(SWIFT) build --build-tests $(JOBS)
	rm -f $(CHILD_FAILURES)
	VT_FAILURE_LOG=$(CHILD_FAILURES) $(SWIFT) test --skip-build || \
	  { cat $(CHILD_FAILURES) 2>/dev/null; exit 1; }

# ThreadSanitizer: fail on the exit code and on any race report (a race may print a warning
# while the test still shows as passed). The library's and the adapters' suites; not the CLI
# tests, which run the TSan-built `vtasks` binary whose WasmKit interpreter reports races of its
# own (AtomicParkingLot), nor the wasm suite.
test-tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan $(JOBS)
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan \
	  --filter "VirtualTasksTests|VirtualTasksEcosystemTests" --skip CLITests 2>&1 | tee .build-tsan/tsan.log; \
	  rc=$${PIPESTATUS[0]}; if grep -q "WARNING: ThreadSanitizer" .build-tsan/tsan.log; then echo "ThreadSanitizer reported a race"; exit 1; fi; exit $$rc

clean:
	rm -rf .build .build-tsan

# Benchmarks: a separate package in Benchmarks/ (SwiftNIO and package-benchmark never reach the
# library's users). `bench` / `bench-quick` print the W1..W8, WA1, WA2 table and write it to
# Benchmarks/results/{latest,quick}.{md,json}; timings are never asserted. `bench-check` fails
# when a malloc count of Benchmarks/Benchmarks/Allocations goes above its threshold in
# Benchmarks/Thresholds/<swift version>/ (or a benchmark crashes or stalls); counts that went down
# pass, with the command that records them. The plugin exits 1 for both directions, so its
# verdict line decides.
BENCH_SWIFT_VERSION ?= $(shell $(SWIFT) --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
BENCH_NOTE = library at $$(git describe --always --dirty 2>/dev/null || echo unknown)

bench:
	$(SWIFT) build -c release --package-path Benchmarks --product vtasks-bench $(JOBS)
	$$($(SWIFT) build -c release --package-path Benchmarks --show-bin-path)/vtasks-bench --note "$(BENCH_NOTE)"

bench-quick:
	$(SWIFT) build -c release --package-path Benchmarks --product vtasks-bench $(JOBS)
	$$($(SWIFT) build -c release --package-path Benchmarks --show-bin-path)/vtasks-bench --quick --note "$(BENCH_NOTE)"

bench-check:
	@test -d Benchmarks/Thresholds/$(BENCH_SWIFT_VERSION) || { echo "no allocation thresholds for Swift $(BENCH_SWIFT_VERSION) in Benchmarks/Thresholds/"; exit 1; }
	@mkdir -p Benchmarks/.build
	cd Benchmarks && $(SWIFT) package benchmark thresholds check --path Thresholds/$(BENCH_SWIFT_VERSION) --no-progress 2>&1 | tee .build/bench-check.log; \
	  rc=$${PIPESTATUS[0]}; log=.build/bench-check.log; \
	  if grep -q "WORSE than" $$log; then echo "bench-check: a malloc count went above its threshold"; exit 2; fi; \
	  if [ $$rc -ne 0 ] && grep -q "BETTER than" $$log && ! grep -q "Failed to run" $$log; then \
	    echo "bench-check: allocation counts went down; record them with"; \
	    echo "  cd Benchmarks && swift package --allow-writing-to-package-directory benchmark thresholds update --path Thresholds/$(BENCH_SWIFT_VERSION)"; exit 0; fi; \
	  exit $$rc

# Documentation (DocC): the catalogs Sources/VirtualTasks/VirtualTasks.docc and
# Sources/VirtualTasksWasm/VirtualTasksWasm.docc, and the API pages of the two adapters. Any
# warning (an unresolved link, a bad curation) fails. Archives land in
# $(DOCS_SCRATCH)/plugins/Swift-DocC/outputs/*.doccarchive.
DOCS_SCRATCH ?= .build
.PHONY: docs
docs:
	$(SWIFT) package --scratch-path $(DOCS_SCRATCH) generate-documentation --warnings-as-errors \
	  --target VirtualTasks --target VirtualTasksWasm \
	  --target VirtualTasksMetrics --target VirtualTasksServiceLifecycle

# vtasks-soak (issue 6): a mixed load on ThreadPoolTaskManager with a new manager every few
# seconds, each shut down (or dropped) with work in flight and submits racing it. It prints its
# ledger and exits 1 unless it balances, 3 on a hang. SOAK_ARGS passes more flags (--seed N, ...).
SOAK_SECONDS ?= 60
SOAK_ARGS ?=
# The soak is time-boxed, so under valgrind it takes its length plus ~10 s (90 s: ~1 min 45 s),
# just doing ~50x less work; a hang is cut off after 60 s.
SOAK_VALGRIND_SECONDS ?= 90
.PHONY: soak soak-tsan soak-valgrind

soak:
	$(SWIFT) build -c release --scratch-path .build-soak --product vtasks-soak $(JOBS)
	$$($(SWIFT) build -c release --scratch-path .build-soak --show-bin-path)/vtasks-soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# ThreadSanitizer: fail on the exit code and on any race report (a report does not change it).
soak-tsan:
	$(SWIFT) build --sanitize=thread --scratch-path .build-tsan-soak --product vtasks-soak $(JOBS)
	$$($(SWIFT) build --sanitize=thread --scratch-path .build-tsan-soak --show-bin-path)/vtasks-soak \
	  --seconds $(SOAK_SECONDS) $(SOAK_ARGS) 2>&1 | tee .build-tsan-soak/soak-tsan.log; \
	  rc=$${PIPESTATUS[0]}; if grep -q "WARNING: ThreadSanitizer" .build-tsan-soak/soak-tsan.log; then echo "ThreadSanitizer reported a race"; exit 1; fi; exit $$rc

# Valgrind memcheck on a short soak: any memory error or definitely lost block fails (so does an
# unbalanced ledger). A debug build with DWARF 4, which valgrind 3.19 can read (not DWARF 5).
SOAK_VALGRIND_BUILD = --scratch-path .build-valgrind-soak -Xswiftc -dwarf-version=4 -Xcc -gdwarf-4
soak-valgrind:
	$(SWIFT) build $(SOAK_VALGRIND_BUILD) --product vtasks-soak $(JOBS)
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --max-threads=2000 --fair-sched=yes \
	  $$($(SWIFT) build $(SOAK_VALGRIND_BUILD) --show-bin-path)/vtasks-soak \
	  --seconds $(SOAK_VALGRIND_SECONDS) --max-in-flight 500 --hang-timeout 60 $(SOAK_ARGS)
