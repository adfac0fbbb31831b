#!/usr/bin/env bash
# `make tarball [ARCH=amd64|arm64|armhf]`: the staged program, with its own Node.js runtime, as
# canrelay-<version>-linux-<arch>.tgz, for gateways without the .deb. On the gateway:
#   tar -xzf canrelay-<version>-linux-<arch>.tgz && sudo ./canrelay-<version>/bin/canrelay-install
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
out="$(mkdir -p "${1:?usage: tarball.sh <output dir>}" && cd "$1" && pwd -P)"
cd "$repo"
. packaging/targets.sh
export ARCH="${ARCH:-$(canrelay_host_arch)}"
canrelay_target "$ARCH"
version="$(node -p 'require("./package.json").version')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
packaging/stage.sh "$work/canrelay-$version"
tgz="$out/canrelay-$version-linux-$ARCH.tgz"
tar -C "$work" --owner=0 --group=0 -czf "$tgz" "canrelay-$version"
echo "$tgz"
