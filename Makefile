# Portcullis developer commands. Run `make` for the list.
#
# The repository root is a go.work workspace, not a module: package patterns below name
# each module's tree.

SHELL := /bin/bash
GO    ?= go
BIN   := bin
PKGS  := ./shared/... ./vaultclient/... ./controlplane/... ./dataplane/... ./migrations/... ./web/... ./tests/...
MODULE_DIRS := shared vaultclient controlplane dataplane migrations web tests
BINARIES := ./controlplane/cmd/controlplane ./controlplane/cmd/portcullis ./dataplane/cmd/dataplane ./tests/cmd/mockupstream ./tests/cmd/portcullis-dev

# Test tuning: three packages at a time keep a 2-core machine busy (many tests wait on
# timers, NATS and HTTP more than they compute: with two, it idles half the time);
# within a package, up to four tests that call t.Parallel run at once (the end-to-end
# tests); the timeout bounds a hung test.
TEST_PARALLEL ?= 3
TEST_PARALLEL_TESTS ?= 4
TEST_TIMEOUT  ?= 20m
TEST_FLAGS    ?=
BENCH_FLAGS   ?=

.DEFAULT_GOAL := help
.PHONY: help build run test lint vet bench soak guardrails-eval console-screenshots config-schema fmt clean clean-data vaultdev

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build controlplane, dataplane, portcullis, mockupstream and portcullis-dev into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(BINARIES)

vaultdev: ## build the throwaway dev Vault launcher (tests/vaultdev, its own module outside go.work) into ./bin
	@mkdir -p $(BIN)
	cd tests/vaultdev && GOWORK=off $(GO) build -buildvcs=false -o $(abspath $(BIN))/vaultdev .

# The dev stack is tests/cmd/portcullis-dev (package tests/stack, which the e2e tests and
# the benchmark use too). make execs the binary directly, so a signal to make reaches it.
run: build ## start the dev stack (Postgres, control plane, two data planes, mock upstream) in the foreground
	$(BIN)/portcullis-dev

vet: ## go vet every module
	$(GO) vet $(PKGS)

# staticcheck is a tool dependency of the tests module (the tool directive in tests/go.mod,
# pinned with its dependencies in tests/go.sum); in the workspace `go tool` finds it from
# the root, building it on first use from the module proxy.
lint: ## fail on a file gofmt would change, then go vet and staticcheck every module
	@unformatted=$$(gofmt -l $(MODULE_DIRS)) || exit; \
	if [[ -n $$unformatted ]]; then \
		printf 'lint: gofmt would change these files:\n%s\nlint: run make fmt\n' "$$unformatted" >&2; \
		exit 1; \
	fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# A race-enabled test binary sleeps GORACE's atexit_sleep_ms (1 s by default) before it
# exits, so that goroutines still running can report a race: over some 70 test binaries
# that is a minute of make test. Our packages end their goroutines before they return
# (goleak checks it), so 50 ms is enough. The end-to-end tests, the longest package,
# are named first so that go test builds and starts them first.
test: lint ## make lint, then every module's tests with -race (needs PostgreSQL; see README)
	GORACE="atexit_sleep_ms=50 $(GORACE)" $(GO) test -race -count=1 -p $(TEST_PARALLEL) -parallel $(TEST_PARALLEL_TESTS) -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./tests/e2e/... $(PKGS)

bench: ## benchmark the data plane against the mock upstream; writes docs/benchmarks.md
	$(GO) run ./tests/bench $(BENCH_FLAGS)

SOAK_DURATION ?= 10m
soak: ## the whole gateway at 16 connections for SOAK_DURATION (10m): RSS flat, no errors, every audit event archived; writes docs/soak.md
	$(GO) run ./tests/bench -soak $(SOAK_DURATION) $(SOAK_FLAGS)

guardrails-eval: ## score the guardrail detectors: precision, recall, F1 per family (more files: GUARDRAILS_EVAL_FILES="a.jsonl b.jsonl.gz")
	$(GO) run ./tests/guardrails/cmd/guardrails-eval $(GUARDRAILS_EVAL_FLAGS) $(GUARDRAILS_EVAL_FILES)

console-screenshots: ## the console's browser test, writing its screenshots to docs/console (needs Chromium)
	mkdir -p docs/console
	PORTCULLIS_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run 'TestConsole.*InChromium' ./tests/e2e/

config-schema: ## regenerate docs/gateway.schema.json, the JSON Schema of gateway.yaml, from the Go types
	PORTCULLIS_UPDATE_SCHEMA=1 $(GO) test -count=1 -run '^TestSchema$$' ./controlplane/internal/gatewayconfig/

fmt: ## gofmt every module
	gofmt -l -w $(MODULE_DIRS)

clean: ## remove build output (never .data; see clean-data)
	rm -rf $(BIN) tests/bench/results

clean-data: ## remove .data: dev database cluster, admin token, keys, NATS store, logs
	@if [ -f .data/pg/postmaster.pid ]; then echo "a dev PostgreSQL may still be running from .data/pg; stop make run first" >&2; exit 1; fi
	rm -rf .data
