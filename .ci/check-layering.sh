#!/usr/bin/env bash
# `make check-layering`: proves that the compiler enforces the layering (docs/architecture.md), by
# compiling a throw-away copy of the sources with one forbidden import added at a time — each must fail
# with TS6307 (a file outside the project) — and the copy without it, which must pass (so the failure
# is that import's, not the copy's). Forbidden: core/ importing agent/ or cloud-bridge/; agent/ and
# cloud-bridge/ importing each other; web/ importing a core/ file that web/tsconfig.json does not list.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
tsc="$repo/node_modules/.bin/tsc"
work="$(mktemp -d "${TMPDIR:-/tmp}/canrelay-layering-XXXXXX")"
trap 'rm -rf "$work"' EXIT
fresh() {
  mkdir -p "$work/tree"
  cp -r "$repo"/package.json "$repo"/tsconfig.base.json "$repo"/core "$repo"/agent "$repo"/cloud-bridge "$repo"/web "$work/tree/"
  ln -s "$repo/node_modules" "$work/tree/node_modules"
}
compile() { # <project dir or tsconfig, relative to the copy>
  case "$1" in web) "$tsc" -p "$work/tree/web/tsconfig.json" ;; *) "$tsc" -b "$work/tree/$1" ;; esac
}
fail=0
fresh
for p in core agent cloud-bridge web; do
  if ! compile "$p" >"$work/out" 2>&1; then cat "$work/out"; echo "check-layering: the unmodified copy of $p does not compile" >&2; exit 1; fi
done
echo "ok: core, agent, cloud-bridge and web compile as they are"
# project | file to add | its import
cases=(
  "core|core/layering-probe.ts|import '../agent/agent.js';"
  "core|core/layering-probe.ts|import '../cloud-bridge/bridge.js';"
  "agent|agent/layering-probe.ts|import '../cloud-bridge/bridge.js';"
  "cloud-bridge|cloud-bridge/layering-probe.ts|import '../agent/agent.js';"
  "web|web/src/layering-probe.ts|import '../../core/console/normalize.js';"
)
for c in "${cases[@]}"; do
  IFS='|' read -r project file line <<<"$c"
  printf '%s\n' "$line" >"$work/tree/$file"
  if compile "$project" >"$work/out" 2>&1; then
    echo "FAIL: $file with \`$line\` compiled; the $project project must refuse it" >&2
    fail=1
  elif grep -q 'TS6307' "$work/out"; then
    echo "ok: $project refuses \`$line\` (TS6307)"
  else
    cat "$work/out" >&2
    echo "FAIL: $file with \`$line\` failed, but not with TS6307 (file outside the project)" >&2
    fail=1
  fi
  rm "$work/tree/$file"
done
exit $fail
