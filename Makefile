# canrelay — build, test, bench. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
NODE ?= node
TSC := node_modules/.bin/tsc

.PHONY: all deps build lint format check-layering run-sim test test-unit test-node24 test-web test-faults test-socketcan bench bench-agent bench-relay bench-socketcand bench-fleet bench-cluster bench-fleet-stream bench-fleet-page bench-commands bench-dbc bench-busload clean
all: build

# Reinstalled when the lock changes (every dependency change does); an edit of package.json alone
# (engines, scripts) does not rebuild the native addons of every checkout.
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

# The program compiles to dist/ (what packaging ships: dist/cli.js, core, agent, cloud-bridge, and the page
# in dist/web); tests and benchmarks to build/test, build/bench. `tsc -b` builds one project per layer
# (tsconfig.json) and only what changed. Compiled tests import the program as ../core/… relative to
# build/: the links below make that the dist/ files that ship. First, the native addons must load under this
# Node (.ci/check-native-addons.cjs: otherwise it says which and how to rebuild).
build: deps
	@$(NODE) .ci/check-native-addons.cjs
	$(TSC) -b tsconfig.json
	@for d in core agent cloud-bridge; do ln -sfn ../dist/$$d build/$$d; done
	$(NODE) web/build.mjs

# Lint and format check (Biome, biome.jsonc: recommended rules, no `any`; the rules turned off say why there).
# Warnings fail too; `make format` rewrites the files to the format. Needs only Biome, not the whole tree (whose
# npm ci builds native addons for minutes): the installed one when there is one, else the version package.json
# pins, fetched alone by npm exec (a few seconds).
BIOME_VERSION = $(shell $(NODE) -p "require('./package.json').devDependencies['@biomejs/biome']")
BIOME = if [ -x node_modules/.bin/biome ]; then node_modules/.bin/biome "$$@"; else npm exec --yes --package=@biomejs/biome@$(BIOME_VERSION) -- biome "$$@"; fi
lint:
	@sh -c '$(BIOME)' biome check --error-on-warnings .
format:
	@sh -c '$(BIOME)' biome format --write .

# The compiler enforces the layering (core/ never imports agent/ or cloud-bridge/, nor they each other;
# web/ only its listed core files): forbidden imports, added to a throw-away copy, must fail to compile.
check-layering: deps
	bash .ci/check-layering.sh

# Try it: the agent on its simulated vehicle bus; the console page at http://127.0.0.1:8080/
run-sim: build
	$(NODE) dist/cli.js agent --sim --id demo --listen 127.0.0.1:8080 --state-dir .state

# Each suite ends with its wall time (figures per suite in test/README.md).
# Every skip goes through test/helpers/skips.ts: under CI (CI=true) a skip of something CI must run fails
# the suite; outside CI each suite ends with a loud list of what it did not check (build/test-skipped.txt).
SKIP_LOG := build/test-skipped.txt
NODE_TEST = rm -f $(SKIP_LOG); t0=$$SECONDS; $(NODE) --test --test-force-exit
SKIP_SUMMARY = s=$$?; printf '\n%s: %d min %d s (exit %d)\n' '$@' $$(((SECONDS-t0)/60)) $$(((SECONDS-t0)%60)) $$s; if [ -s $(SKIP_LOG) ]; then printf '\n%s\n' '******** SKIPPED: this run did NOT check the following ********'; cat $(SKIP_LOG); printf '%s\n\n' '***************************************************************'; fi; exit $$s

# node:test over the compiled tests (build/test/); a suite is a folder of test/ (README.md): test/unit/
# (no processes, no servers) and test/e2e/ (real processes over loopback) make test-unit. Browser and
# deployment suites run one file at a time: they start Chromium, nginx or a VM and measure rates, which a
# parallel neighbour would disturb.
TESTS_IN = $$(find $(addprefix build/test/,$(1)) -name '*.test.js' | sort)
UNIT_TESTS = $(call TESTS_IN,unit e2e)
test-unit: build
	bash .ci/ensure-debs.sh postgresql  # test/e2e/cluster-pg starts a real server
	$(NODE_TEST) --test-timeout=300000 --test-concurrency=2 $(UNIT_TESTS); $(SKIP_SUMMARY)

test-web: build
	bash .ci/ensure-debs.sh chromium firefox-esr
	$(NODE_TEST) --test-timeout=300000 --test-concurrency=1 $(call TESTS_IN,web); $(SKIP_SUMMARY)

# Fault injection (docs/reliability.md): full disks, paused bridges, clock offsets, hostile input, floods.
# One file at a time: they pause and kill processes and fill file systems.
test-faults: build
	bash .ci/ensure-debs.sh strace  # test/faults/state.test.ts: the bridge's commits reach the disk
	$(NODE_TEST) --test-timeout=300000 --test-concurrency=1 $(call TESTS_IN,faults); $(SKIP_SUMMARY)

# The real SocketCAN path: Debian's kernel with vcan and emulated SJA1000 controllers under qemu, the real
# agent, bridge and can-utils; the host's Chromium drives the console page of the guest's agent through a
# qemu port forward (guest-run.test.ts boots the guest with run.sh and ends with its exit status).
test-socketcan: build
	bash .ci/ensure-debs.sh chromium
	SOCKETCAN_VM_TIMEOUT=$${SOCKETCAN_VM_TIMEOUT:-1800} $(NODE_TEST) --test-timeout=2000000 build/test/socketcan-vm/guest-run.test.js; $(SKIP_SUMMARY)

# The unit suite again on Node 24 (the packages' runtime), with addons rebuilt for it in a copy of
# node_modules under build/node24 (.ci/test-node24.sh); Debian's Node 20 tree stays as it is.
test-node24: build
	bash .ci/test-node24.sh

test: lint check-layering test-unit test-node24 test-faults test-web test-deploy test-socketcan

# Benchmarks: not tests. Figures go to bench/results/*.md (and .json).
bench-agent: build
	$(NODE) build/bench/agent-console.js

bench-relay: build
	$(NODE) build/bench/bridge-relay.js

bench-busload: build
	$(NODE) build/bench/bus-load.js

bench-socketcand: build
	$(NODE) build/bench/socketcand.js

# The bridge's cost per dongle at fleet shape (10 to 2,000 fake agents; about 10 minutes).
# BENCH_SHAPES=dongles x rate x seconds x viewers,… picks shapes; BENCH_COMPARE=<other dist/cli.js> adds another build;
# BENCH_SEND_TICK_MS (10) how often each fake agent sends a batch; BENCH_SCRAPE_MS (1000) its /metrics polls; BENCH_FLOOR=ws,raw,c adds a bare relay of the wire format (bench/relay-floor.ts; c: bench/relay-floor.c, needs cc and libssl-dev).
bench-fleet: build
	$(NODE) build/bench/bridge-fleet.js

# Cluster mode against the embedded bridge: 200 fake dongles in 100 groups at 200 frames/s (the issue says 500: too much for 2 shared cores), on 1 node (SQLite),
# 1 node and 2 nodes on a real PostgreSQL + nats-server started by the bench (about 3 minutes; stops them all).
# BENCH_SHAPE=dongles x rate x seconds, BENCH_RUNS (2), BENCH_MODES, BENCH_BRIDGE_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
bench-cluster: build
	$(NODE) build/bench/bridge-cluster.js

# The fleet stream at 2,000 fake dongles: snapshot time and size, events/s while every dongle sends "seen".
# BENCH_FLEET_DONGLES, BENCH_FLEET_SECONDS change the shape.
bench-fleet-stream: build
	$(NODE) build/bench/fleet-stream.js

# The fleet page in headless Chromium at 2,000 fake dongles: snapshot drawn, main-thread time, long tasks,
# rows created, how fast it answers (next page, filter, a change shown). BENCH_FLEET_PAGE_DONGLES,
# BENCH_FLEET_PAGE_SECONDS change the shape; BENCH_LABEL names the result files.
bench-fleet-page: build
	$(NODE) build/bench/fleet-page.js

# A dongle's full command queue delivered on connect (BENCH_COMMANDS=1000,10000; BENCH_RUNS=3).
bench-commands: build
	$(NODE) build/bench/command-flood.js

# DBC decoding: cost per frame in process, and the agent's CPU at 50,000 frames/s with a 50-message DBC.
bench-dbc: build
	$(NODE) build/bench/dbc-decode.js

# Console fan-out side by side with nchan and better-sse (issue #15; about 5 minutes per shape).
# BENCH_FANOUT_SHAPES=clients x rate x seconds,… BENCH_FANOUT_SERVERS=nchan,better-sse,agent,bridge BENCH_FANOUT_RUNS=1.
# better-sse is installed for the bench only (build/bench-deps), never a dependency of the package.
.PHONY: bench-fanout
bench-fanout: build
	bash .ci/ensure-debs.sh nginx libnginx-mod-nchan
	test -f build/bench-deps/node_modules/better-sse/package.json || npm install --no-save --no-package-lock --no-audit --no-fund --prefix build/bench-deps better-sse@0.16.1
	$(NODE) build/bench/fanout/fanout.js

bench: bench-agent bench-relay bench-socketcand bench-fleet bench-commands bench-dbc bench-busload bench-fanout
	@cat bench/results/*.md

clean:
	rm -rf dist build

include mk/deploy.mk
