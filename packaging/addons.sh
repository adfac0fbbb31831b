#!/usr/bin/env bash
# Builds the native addons (better-sqlite3, socketcan) of a staged node_modules for one architecture
# and the pinned runtime of packaging/targets.sh: with Debian's compilers (g++ for amd64, the cross
# toolchains g++-aarch64-linux-gnu and g++-arm-linux-gnueabihf otherwise), against the runtime's own
# headers and the oldest supported Debian's C and C++ libraries (packaging/sysroot.sh), so they load on
# that Debian and every newer one. Built addons are cached per architecture, runtime, floor and version.
#   packaging/addons.sh <arch> <node_modules dir>     environment: CANRELAY_CACHE
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
. "$repo/packaging/targets.sh"
arch="${1:?usage: addons.sh <arch> <node_modules dir>}"
nm="$(cd "${2:?usage: addons.sh <arch> <node_modules dir>}" && pwd -P)"
canrelay_target "$arch"
runtime="$("$repo/packaging/node-runtime.sh" "$arch")"
cache="${CANRELAY_CACHE:-$repo/dist/cache}"
gyp="$repo/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || { echo "addons: node-gyp is missing from node_modules: run npm ci" >&2; exit 2; }

# shellcheck disable=SC2086
[ -z "$CROSS_DEBS" ] || bash "$repo/.ci/ensure-debs.sh" $CROSS_DEBS
export CC="$TRIPLET-gcc" CXX="$TRIPLET-g++" AR="$TRIPLET-ar" LINK="$TRIPLET-g++" RANLIB="$TRIPLET-ranlib"
export CC_host=gcc CXX_host=g++
# Only the sysroot's headers and libraries: the compiler's own C headers (stddef.h, …) stay, this machine's
# /usr/include and the compiler's newer libstdc++ do not. C++ headers come before the C ones (libstdc++'s
# <cstdlib> includes the next <stdlib.h>). Its library directories come before the compiler's own.
sysroot="$("$repo/packaging/sysroot.sh" "$arch")"
c_inc="-nostdinc -isystem $("$CC" -print-file-name=include) -isystem $("$CC" -print-file-name=include-fixed) -isystem $sysroot/usr/include/$TRIPLET -isystem $sysroot/usr/include"
cxx_inc="-nostdinc++ -isystem $sysroot/usr/include/c++/$FLOOR_GCC -isystem $sysroot/usr/include/$TRIPLET/c++/$FLOOR_GCC -isystem $sysroot/usr/include/c++/$FLOOR_GCC/backward"
export CFLAGS="--sysroot=$sysroot $c_inc" CXXFLAGS="--sysroot=$sysroot $cxx_inc $c_inc -include $repo/packaging/compat/bit_cast.h"
export LDFLAGS="--sysroot=$sysroot -L$sysroot/usr/lib/gcc/$TRIPLET/$FLOOR_GCC -L$sysroot/lib/$TRIPLET -L$sysroot/usr/lib/$TRIPLET"

# addon dir → the .node files it must produce
build_one() {
  local name="$1"; shift
  local dir="$nm/$name"
  local version key out
  version="$(node -p "require('$dir/package.json').version")"
  key="$cache/addons/$arch-node$NODE_VERSION-$FLOOR_SUITE/$name-$version"
  if [ ! -f "$key/.done" ]; then
    echo "building $name $version for $arch (Node.js $NODE_VERSION)" >&2
    out="$(mktemp -d)"
    # Built in a copy (the staged tree stays clean); NODE_PATH lets binding.gyp find node-addon-api.
    cp -a "$dir/." "$out/"
    rm -rf "$out/build"
    (cd "$out" && NODE_PATH="$nm" node "$gyp" rebuild --release --arch="$GYP_ARCH" --nodedir="$runtime" -j 2 >"$out/.build.log" 2>&1) || {
      tail -30 "$out/.build.log" >&2
      echo "addons: building $name for $arch failed (log above)" >&2
      exit 1
    }
    # The proof that the sysroot was used: nothing newer than the floor's C and C++ libraries is named.
    local need
    need="$("$repo/packaging/elf-floor.sh" "${@/#/$out/build/Release/}")"
    read -r glibc gcc <<<"$need"
    if [ "$(printf '%s\n' "$glibc" "$FLOOR_GLIBC" | sort -V | tail -1)" != "$FLOOR_GLIBC" ] || [ "$(printf '%s\n' "$gcc" "$FLOOR_GCC" | sort -V | tail -1)" != "$FLOOR_GCC" ]; then
      echo "addons: $name for $arch needs glibc $glibc and GCC $gcc's libstdc++, newer than Debian $FLOOR_DEBIAN's ($FLOOR_GLIBC, $FLOOR_GCC): the sysroot was not used" >&2
      exit 1
    fi
    rm -rf "$key"
    mkdir -p "$key"
    for f in "$@"; do cp "$out/build/Release/$f" "$key/"; done
    rm -rf "$out"
    touch "$key/.done"
  fi
  rm -rf "$dir/build"
  mkdir -p "$dir/build/Release"
  for f in "$@"; do
    cp "$key/$f" "$dir/build/Release/$f"
    # The proof that the cross build is for the right CPU: the ELF header names the machine.
    readelf -h "$dir/build/Release/$f" | grep -q "Machine:.*$ELF_MACHINE" || { echo "addons: $name/$f is not an $ELF_MACHINE binary" >&2; exit 1; }
  done
}
build_one better-sqlite3 better_sqlite3.node
build_one socketcan can.node can_signals.node
