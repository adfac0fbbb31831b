#!/usr/bin/env bash
# `make install`: stages the built program (packaging/stage.sh) and installs + activates it with the
# staged bin/canrelay-install — the same script a tarball or a rollback uses. Environment: DESTDIR,
# PREFIX, BINDIR, UNITDIR, SYSUSERSDIR, ARCH (see canrelay-install and stage.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
version="$(cd "$repo" && node -p 'require("./package.json").version')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$repo/packaging/stage.sh" "$work/canrelay-$version"
"$work/canrelay-$version/bin/canrelay-install"
