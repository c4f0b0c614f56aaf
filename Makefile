# Portcullis developer commands. Run `make` for the list.
#
# The repository root is a go.work workspace, not a module: package patterns below name
# each module's tree.

SHELL := /bin/bash
GO    ?= go
BIN   := bin
PKGS  := ./shared/... ./shared/vaultclient/... ./controlplane/... ./dataplane/... ./migrations/... ./web/... ./tests/...
MODULE_DIRS := shared controlplane dataplane migrations web tests
BINARIES := ./controlplane/cmd/controlplane ./controlplane/cmd/portcullis ./dataplane/cmd/dataplane ./tests/cmd/mockupstream

# Test tuning: two packages at a time suits a 2-core machine; the timeout bounds a hung test.
TEST_PARALLEL ?= 2
TEST_TIMEOUT  ?= 20m
TEST_FLAGS    ?=
BENCH_FLAGS   ?=

.DEFAULT_GOAL := help
.PHONY: help build run test vet bench fmt clean clean-data vaultdev

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build controlplane, dataplane, portcullis and mockupstream into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(BINARIES)

vaultdev: ## build the throwaway dev Vault launcher (tests/vaultdev, its own module outside go.work) into ./bin
	@mkdir -p $(BIN)
	cd tests/vaultdev && GOWORK=off $(GO) build -buildvcs=false -o $(abspath $(BIN))/vaultdev .

run: ## start the dev stack (Postgres, control plane, two data planes, mock upstream) in the foreground
	./scripts/devstack.sh

vet: ## go vet every module
	$(GO) vet $(PKGS)

test: vet ## go vet, then every module's tests with -race (needs PostgreSQL; see README)
	$(GO) test -race -count=1 -p $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(PKGS)

bench: ## benchmark the data plane against the mock upstream; writes docs/benchmarks.md
	$(GO) run ./tests/bench $(BENCH_FLAGS)

fmt: ## gofmt every module
	gofmt -l -w $(MODULE_DIRS)

clean: ## remove build output (never .data; see clean-data)
	rm -rf $(BIN) tests/bench/results

clean-data: ## remove .data: dev database cluster, admin token, keys, NATS store, logs
	@if [ -f .data/pg/postmaster.pid ]; then echo "a dev PostgreSQL may still be running from .data/pg; stop make run first" >&2; exit 1; fi
	rm -rf .data
