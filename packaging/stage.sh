#!/usr/bin/env bash
# Builds the self-contained program directory of one version — what becomes /opt/canrelay/<version>:
#   node/ (the pinned Node.js runtime for ARCH, packaging/targets.sh), dist/ (compiled, no tests),
#   node_modules/ (production dependencies only, native addons built for that runtime and CPU),
#   package.json, bin/canrelay (launcher), bin/canrelay-install (activation, rollback), docs/,
#   share/{systemd,sysusers.d,nginx}/.
#   packaging/stage.sh <appdir>          (run from anywhere; uses the repository's dist/ and node_modules/)
# Environment: ARCH (amd64, arm64 or armhf; default: this machine's), CANRELAY_CACHE (see node-runtime.sh).
# The gateway needs no Node.js of its own, and a distro Node.js is never used or touched.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
out="${1:?usage: stage.sh <appdir>}"
cd "$repo"
[ -f dist/cli.js ] || { echo "stage: dist/cli.js is missing: run make build first" >&2; exit 2; }
[ -d node_modules ] || { echo "stage: node_modules is missing: run make build first" >&2; exit 2; }
. packaging/targets.sh
ARCH="${ARCH:-$(canrelay_host_arch)}"
canrelay_target "$ARCH"
runtime="$(packaging/node-runtime.sh "$ARCH")"

rm -rf "$out"
mkdir -p "$out/bin" "$out/docs" "$out/share/systemd" "$out/share/sysusers.d" "$out/share/nginx"

# The compiled program, without source maps (tests and benchmarks compile to build/, never to dist/).
# An explicit list, not exclusions: dist/ also holds build caches and packages (dist/cache, dist/pkg)
# and the compiler's declarations and build info (dist/.tsc) that must never ship.
tar -C . --exclude='*.map' -cf - ./dist/cli.js ./dist/core ./dist/agent ./dist/cloud-bridge ./dist/web | tar -C "$out" -xf -
cp package.json package-lock.json "$out/"
node -p 'require("./package.json").version' > "$out/VERSION"

# The runtime: the node binary and its licence; headers and docs stay in the build cache.
mkdir -p "$out/node/bin"
cp "$runtime/bin/node" "$out/node/bin/node"
cp "$runtime/LICENSE" "$out/node/LICENSE"
echo "$NODE_VERSION" > "$out/node/VERSION"

# Production dependencies only: copy the build tree's node_modules, prune the dev dependencies offline,
# build the native addons for ARCH and the bundled runtime (packaging/addons.sh), then drop the addons'
# build intermediates and C sources.
cp -a node_modules "$out/"
(cd "$out" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >"$out/.prune.log" 2>&1) || { cat "$out/.prune.log" >&2; exit 1; }
rm -f "$out/.prune.log"
packaging/addons.sh "$ARCH" "$out/node_modules"
rm -rf "$out/node_modules/.bin" "$out/node_modules/.package-lock.json.bak" \
  "$out/node_modules/better-sqlite3/deps" "$out/node_modules/better-sqlite3/src" \
  "$out"/node_modules/*/build/Release/obj.target "$out"/node_modules/*/build/Release/.deps \
  "$out"/node_modules/*/build/Release/obj "$out"/node_modules/*/build/Release/test_extension.node
find "$out/node_modules" \( -name '*.a' -o -name '*.o' \) -type f -delete

cp packaging/canrelay.in "$out/bin/canrelay"
cp packaging/canrelay-install "$out/bin/canrelay-install"
# A gateway installed from the tarball has no source tree: what `make uninstall` runs comes with it.
cp packaging/uninstall.sh "$out/bin/canrelay-uninstall"
chmod 0755 "$out/bin/canrelay" "$out/bin/canrelay-install" "$out/bin/canrelay-uninstall"

[ -f docs/deployment.md ] && cp docs/deployment.md "$out/docs/"
cp systemd/*.service systemd/*.example.json "$out/share/systemd/"
cp packaging/sysusers.d/canrelay.conf "$out/share/sysusers.d/"
[ -f ops/nginx/canrelay-bridge.conf ] && cp ops/nginx/canrelay-bridge.conf "$out/share/nginx/"
chmod -R u=rwX,go=rX "$out"
echo "$ARCH" > "$out/ARCH"
echo "staged $out ($ARCH, Node.js $NODE_VERSION)" >&2
