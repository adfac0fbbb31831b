#!/usr/bin/env bash
# Fetches the pinned Node.js runtime for one architecture (packaging/targets.sh) from the npm registry,
# checks its integrity hash, and unpacks it once into the cache; prints the runtime's directory
# (bin/node, include/node for building addons, LICENSE).
#   packaging/node-runtime.sh <arch>        environment: CANRELAY_CACHE (default <repo>/dist/cache)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
. "$repo/packaging/targets.sh"
canrelay_target "${1:?usage: node-runtime.sh <arch>}"
cache="${CANRELAY_CACHE:-$repo/dist/cache}"
dir="$cache/$NODE_PKG-$NODE_VERSION"
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching $NODE_PKG@$NODE_VERSION from the npm registry" >&2
  (cd "$tmp" && npm pack --silent "$NODE_PKG@$NODE_VERSION" >/dev/null)
  tgz="$tmp/$NODE_PKG-$NODE_VERSION.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$NODE_INTEGRITY" ]; then
    echo "node-runtime: $NODE_PKG@$NODE_VERSION does not match its pinned integrity (got $got): refusing to package it" >&2
    exit 1
  fi
  mkdir -p "$tmp/x"
  tar -xzf "$tgz" -C "$tmp/x"
  rm -rf "$dir"
  mv "$tmp/x/package" "$dir"
fi
echo "$dir"
