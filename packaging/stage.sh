#!/usr/bin/env bash
# Builds the self-contained program directory of one version — what becomes /opt/canrelay/<version>:
#   dist/ (compiled, no tests), node_modules/ (production dependencies only, native addons built for
#   this Node.js), package.json, bin/canrelay (launcher), bin/canrelay-install (activation, rollback),
#   docs/, share/{systemd,sysusers.d,nginx}/.
#   packaging/stage.sh <appdir>          (run from anywhere; uses the repository's dist/ and node_modules/)
# Environment: NODE (runtime the launcher execs; default /usr/bin/node when present, else `command -v node`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
out="${1:?usage: stage.sh <appdir>}"
cd "$repo"
[ -f dist/cli.js ] || { echo "stage: dist/cli.js is missing: run make build first" >&2; exit 2; }
[ -d node_modules ] || { echo "stage: node_modules is missing: run make build first" >&2; exit 2; }
if [ -z "${NODE:-}" ]; then
  if [ -x /usr/bin/node ]; then NODE=/usr/bin/node; else NODE="$(command -v node)"; fi
fi
case "$NODE" in
  /root/*|/home/*) echo "stage: warning: NODE=$NODE is under a home directory; the units run with ProtectHome=yes and cannot reach it" >&2 ;;
esac

rm -rf "$out"
mkdir -p "$out/bin" "$out/docs" "$out/share/systemd" "$out/share/sysusers.d" "$out/share/nginx"

# The compiled program, without tests, benchmarks and source maps.
tar -C . --exclude='./dist/test' --exclude='./dist/bench' --exclude='./dist/pkg' --exclude='*.map' -cf - ./dist | tar -C "$out" -xf -
cp package.json package-lock.json "$out/"
node -p 'require("./package.json").version' > "$out/VERSION"

# Production dependencies only: copy the build tree's node_modules (socketcan and better-sqlite3 were
# compiled here for this Node.js ABI, and tested) and prune the dev dependencies, offline; then drop the
# addons' build intermediates and C sources.
cp -a node_modules "$out/"
(cd "$out" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$out/node_modules/.bin" "$out/node_modules/.package-lock.json.bak" \
  "$out/node_modules/better-sqlite3/deps" "$out/node_modules/better-sqlite3/src" \
  "$out"/node_modules/*/build/Release/obj.target "$out"/node_modules/*/build/Release/.deps \
  "$out"/node_modules/*/build/Release/obj "$out"/node_modules/*/build/Release/test_extension.node
find "$out/node_modules" \( -name '*.a' -o -name '*.o' \) -type f -delete

sed "s#@NODE@#$NODE#g" packaging/canrelay.in > "$out/bin/canrelay"
cp packaging/canrelay-install "$out/bin/canrelay-install"
chmod 0755 "$out/bin/canrelay" "$out/bin/canrelay-install"

[ -f docs/deployment.md ] && cp docs/deployment.md "$out/docs/"
cp systemd/*.service systemd/*.example.json "$out/share/systemd/"
cp packaging/sysusers.d/canrelay.conf "$out/share/sysusers.d/"
[ -f ops/nginx/canrelay-bridge.conf ] && cp ops/nginx/canrelay-bridge.conf "$out/share/nginx/"
chmod -R u=rwX,go=rX "$out"
echo "staged $out" >&2
