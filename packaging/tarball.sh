#!/usr/bin/env bash
# `make tarball`: the staged program as canrelay-<version>-linux-<arch>.tgz, for gateways without the
# .deb. On the gateway: tar -xzf canrelay-<version>-linux-<arch>.tgz && sudo ./canrelay-<version>/bin/canrelay-install
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
out="$(mkdir -p "${1:?usage: tarball.sh <output dir>}" && cd "$1" && pwd -P)"
cd "$repo"
version="$(node -p 'require("./package.json").version')"
arch="$(node -p 'process.arch')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
packaging/stage.sh "$work/canrelay-$version"
tgz="$out/canrelay-$version-linux-$arch.tgz"
tar -C "$work" --owner=0 --group=0 -czf "$tgz" "canrelay-$version"
echo "$tgz"
