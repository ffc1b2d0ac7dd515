# The two set-up commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
SWIFT ?= swift
JOBS ?=

.PHONY: build run test test-tsan probe clean

build:
	$(SWIFT) build $(JOBS)

run:
	$(SWIFT) build --product vtasks $(JOBS)
	$$($(SWIFT) build --show-bin-path)/vtasks probe
	$$($(SWIFT) build --show-bin-path)/vtasks run

test:
	$(SWIFT) build --build-tests $(JOBS)
	$(SWIFT) test --skip-build

# ThreadSanitizer: fail on the exit code and on any race report (a race may print a warning
# while the test still shows as passed).
test-tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan $(JOBS)
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --filter VirtualTasksTests 2>&1 | tee .build-tsan/tsan.log; \
	  rc=$${PIPESTATUS[0]}; if grep -q "WARNING: ThreadSanitizer" .build-tsan/tsan.log; then echo "ThreadSanitizer reported a race"; exit 1; fi; exit $$rc

clean:
	rm -rf .build .build-tsan

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
