#!/usr/bin/env bash
# The oldest C and C++ runtime some ELF files can load with: the highest GLIBC_ and GLIBCXX_ symbol
# versions they name (readelf reads every architecture), GLIBCXX in the GCC release that brought it
# (Debian's libstdc++6 is versioned by GCC). Prints "<glibc> <gcc>", e.g. "2.31 10".
#   packaging/elf-floor.sh <elf file>...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: elf-floor.sh <elf file>..." >&2; exit 2; }
versions=$(readelf -W --version-info "$@" 2>/dev/null)
glibc=$(grep -o 'GLIBC_2\.[0-9]*' <<<"$versions" | sed 's/GLIBC_//' | sort -V | tail -1 || true)
glibcxx=$(grep -o 'GLIBCXX_3\.4\.[0-9]*' <<<"$versions" | sed 's/GLIBCXX_3\.4\.//' | sort -n | tail -1 || true)
[ -n "$glibc" ] || { echo "elf-floor: no GLIBC_ version found in $* (readelf missing?)" >&2; exit 1; }
# Where unsure which point release brought a version, the next major one: a floor may be too high, never
# too low (dpkg would install on a system the package cannot start on).
case "${glibcxx:-0}" in
  0) gcc=5.2 ;; 1[0-9] | 2[0-2]) gcc=6 ;; 2[3-5]) gcc=8 ;; 26) gcc=9 ;; 27 | 28) gcc=10 ;; 29) gcc=11 ;;
  30) gcc=12 ;; 31) gcc=13 ;; 32) gcc=13.2 ;; 33) gcc=14 ;;
  *) echo "elf-floor: GLIBCXX_3.4.$glibcxx is not in the table: add its GCC release" >&2; exit 1 ;;
esac
echo "$glibc $gcc"
