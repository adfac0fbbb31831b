# canrelay — build, test, bench. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
NODE ?= node
TSC := node_modules/.bin/tsc

.PHONY: all deps build test test-unit bench clean
all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

build: deps
	$(TSC) -p tsconfig.json

# Unit and integration tests: node:test over the compiled output.
test-unit: build
	$(NODE) --test --test-concurrency=2 $$(find dist/test -maxdepth 1 -name '*.test.js' | sort)

test: test-unit

clean:
	rm -rf dist
