#!/usr/bin/env bash
# The unit suite on Node.js 24 as well as on Debian's Node 20 (`make test-node24`, part of `make test`).
# Node 24 is the runtime the packages carry (packaging/targets.sh): the same pinned official build is
# fetched from the npm registry into dist/cache (packaging/node-runtime.sh), the native addons are
# rebuilt against its headers (packaging/addons.sh) in a copy of node_modules, so the Node 20 tree
# stays intact. The copy lives in build/node24/, a mirror of the checkout (sources linked; the compiled
# dist/ and build/, the same JavaScript for any Node, and node_modules copied) where `make test-unit
# NODE=<node 24>` runs: compiled code there resolves its packages, and so the Node 24 addons, from the
# copy. Run after `make build` (the Makefile's test-node24 does).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$repo"
. packaging/targets.sh
arch="$(canrelay_host_arch)"
runtime="$(bash packaging/node-runtime.sh "$arch")"
node24="$runtime/bin/node"
"$node24" -e 'if (process.versions.node.split(".")[0] !== "24") { console.error(`expected Node 24, got ${process.version}`); process.exit(1); }'

tree="$repo/build/node24"
rm -rf "$tree"
mkdir -p "$tree"
shopt -s dotglob
for entry in "$repo"/*; do
  name="$(basename "$entry")"
  case "$name" in dist | build | node_modules | .git) continue ;; esac
  ln -s "$entry" "$tree/$name"
done
mkdir -p "$tree/dist" "$tree/build"
for entry in "$repo"/dist/* "$repo"/dist/.tsc; do
  case "$(basename "$entry")" in cache | pkg) continue ;; esac
  cp -a "$entry" "$tree/dist/"
done
# The compiled tests (build/core etc. are relative links to ../dist/…, so they point into the copy).
for entry in "$repo"/build/*; do
  case "$(basename "$entry")" in node24 | test-skipped.txt) continue ;; esac
  cp -a "$entry" "$tree/build/"
done
cp -a "$repo/node_modules" "$tree/node_modules"
# The copy is the installed tree (`make deps` ran first): never let make's npm ci replace its addons.
touch "$tree/node_modules/.package-lock.json"
bash packaging/addons.sh "$arch" "$tree/node_modules"
# The addons load in Node 24 (a wrong ABI would fail here with ERR_DLOPEN_FAILED, before any test).
(cd "$tree" && "$node24" -e '
  const db = require("better-sqlite3")(":memory:");
  if (db.prepare("select 41 + 1 as x").get().x !== 42) process.exit(1);
  require("socketcan");
  console.error(`node ${process.version}: better-sqlite3 and socketcan load`);
')
# Data the suites find beside the checkout (../shared/data under CI) is beside the real one, not the mirror.
export CANRELAY_SHARED_DATA="${CANRELAY_SHARED_DATA:-$(dirname "$repo")/shared/data}"
# The tests' own child processes (the CLI, via process.execPath) run on Node 24 too.
# -o build: the copied dist/ and build/ are the build (make would otherwise compile again inside the mirror).
exec make -C "$tree" -o build test-unit NODE="$node24"
