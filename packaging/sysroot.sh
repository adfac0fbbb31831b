#!/usr/bin/env bash
# Builds, once per architecture, a sysroot of the oldest Debian the packages support (packaging/targets.sh:
# FLOOR_SUITE): its C library, kernel headers and GCC's C++ library, headers and shared objects. The native
# addons are compiled and linked against it (packaging/addons.sh), so they need no newer C or C++ library
# than that Debian has: built with this machine's compilers against this machine's own libraries, they
# needed glibc 2.34 and did not load on Debian 11 (Raspberry Pi OS bullseye). The packages test runs the
# packaged runtime with this sysroot's libraries (qemu-user -L): the proof that they really load there.
#
# The .deb files come from the Debian mirror this machine's apt is configured with (FLOOR_SUITE instead of
# its own suite), through apt-get with a private state directory: the system's apt state is not touched.
# Prints the sysroot's directory.
#   packaging/sysroot.sh <arch>        environment: CANRELAY_CACHE (default <repo>/dist/cache)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
. "$repo/packaging/targets.sh"
arch="${1:?usage: sysroot.sh <arch>}"
canrelay_target "$arch"
cache="${CANRELAY_CACHE:-$repo/dist/cache}"
dir="$cache/sysroot/$FLOOR_SUITE-$arch"
# The libraries the packaged runtimes load are in it too (libatomic1: the armhf runtime), for the test.
packages="libc6 libc6-dev linux-libc-dev libgcc-s1 libgcc-$FLOOR_GCC-dev libstdc++6 libstdc++-$FLOOR_GCC-dev libatomic1"

if [ "$(cat "$dir/.done" 2>/dev/null)" != "$packages" ]; then
  mirror="$(bash "$repo/packaging/debian-mirror.sh")" || { echo "sysroot: cannot tell which Debian mirror to use (above)" >&2; exit 1; }
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || { echo "sysroot: $keyring is missing: apt-get install debian-archive-keyring" >&2; exit 1; }
  mkdir -p "$cache/sysroot"
  tmp="$(mktemp -d "$cache/sysroot/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/root"
  printf 'deb [arch=%s signed-by=%s] %s %s main\n' "$arch" "$keyring" "$mirror" "$FLOOR_SUITE" > "$tmp/sources.list"
  : > "$tmp/status"
  apt_opts=(-qq -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::State::status=$tmp/status" -o "Dir::Cache=$tmp/cache"
    -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  echo "building the $FLOOR_SUITE sysroot for $arch ($packages)" >&2
  apt-get "${apt_opts[@]}" update >&2 || { echo "sysroot: could not read $FLOOR_SUITE's package lists from $mirror (log above)" >&2; exit 1; }
  # shellcheck disable=SC2086
  (cd "$tmp/debs" && apt-get "${apt_opts[@]}" download $packages >&2) || { echo "sysroot: downloading $packages for $arch failed (log above)" >&2; exit 1; }
  for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
  # Absolute links (/lib64/ld-linux-x86-64.so.2 → /lib/x86_64-linux-gnu/ld-2.31.so) would point into this
  # machine's own root: made relative, they stay inside the sysroot for the linker and for qemu-user -L.
  while IFS= read -r link; do
    target="$(readlink "$link")"
    case "$target" in /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$tmp/root$target")" "$link" ;; esac
  done < <(find "$tmp/root" -type l)
  [ -f "$tmp/root/usr/include/$TRIPLET/c++/$FLOOR_GCC/bits/c++config.h" ] || { echo "sysroot: libstdc++-$FLOOR_GCC-dev for $arch is incomplete" >&2; exit 1; }
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
  echo "$packages" > "$dir/.done"
fi
echo "$dir"
