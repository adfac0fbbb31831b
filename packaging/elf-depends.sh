#!/usr/bin/env bash
# The Debian packages some ELF files need, as a Depends: value: every shared library they name (NEEDED)
# mapped to the package that ships it, with the C and C++ library floors read from their symbol versions
# (packaging/elf-floor.sh). A library not in the table fails the build: a package that installs where its
# runtime cannot start is worse than no package (the armhf runtime needs libatomic1, which a minimal
# Debian lacks).
#   packaging/elf-depends.sh <elf file>...      → e.g. "libc6 (>= 2.29), libstdc++6 (>= 10), libgcc-s1"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
[ $# -gt 0 ] || { echo "usage: elf-depends.sh <elf file>..." >&2; exit 2; }
read -r glibc gcc <<<"$("$here/elf-floor.sh" "$@")"
deps=()
add() { local d; for d in "${deps[@]}"; do [ "$d" = "$1" ] && return; done; deps+=("$1"); }
while read -r lib; do
  case "$lib" in
    libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux*.so.* | ld-linux-*.so.*) add "libc6 (>= $glibc)" ;;
    libstdc++.so.6) add "libstdc++6 (>= $gcc)" ;;
    libgcc_s.so.1) add "libgcc-s1" ;;
    libatomic.so.1) add "libatomic1" ;;
    *) echo "elf-depends: $lib (needed by $*) is not in the table: add the Debian package that ships it" >&2; exit 1 ;;
  esac
done < <(readelf -d "$@" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
(IFS=','; echo "${deps[*]}" | sed 's/,/, /g')
