#!/usr/bin/env bash
# `make deb`: builds canrelay_<version>-<rev>_<arch>.deb with dpkg-deb from the same staged tree as
# `make install` (packaging/stage.sh + bin/canrelay-install with DESTDIR), BINDIR=/usr/bin.
#   packaging/deb/build-deb.sh <output dir>      environment: DEB_REVISION (default 1), ARCH
# The package is architecture-specific and self-contained: it carries its own Node.js runtime and native
# addons built for it (packaging/targets.sh), so it depends on no nodejs package — only on the C and C++
# libraries every Debian system has (the official Node.js builds need glibc 2.28).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd -P)"
out="$(mkdir -p "${1:?usage: build-deb.sh <output dir>}" && cd "$1" && pwd -P)"
cd "$repo"
version="$(node -p 'require("./package.json").version')"
rev="${DEB_REVISION:-1}"
. packaging/targets.sh
export ARCH="${ARCH:-$(canrelay_host_arch)}"
canrelay_target "$ARCH"
arch="$ARCH"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pkg="$work/root"

packaging/stage.sh "$work/canrelay-$version"
DESTDIR="$pkg" PREFIX=/opt/canrelay BINDIR=/usr/bin UNITDIR=/lib/systemd/system SYSUSERSDIR=/usr/lib/sysusers.d \
  "$work/canrelay-$version/bin/canrelay-install" >/dev/null
mkdir -p "$pkg/usr/share/doc/canrelay"
cp docs/deployment.md "$pkg/usr/share/doc/canrelay/" 2>/dev/null || true
printf 'canrelay %s\nLicense: MIT (see package.json). Bundled npm dependencies keep their own licenses under\n/opt/canrelay/%s/node_modules/*/LICENSE*; the bundled Node.js runtime its own in\n/opt/canrelay/%s/node/LICENSE.\n' "$version" "$version" "$version" > "$pkg/usr/share/doc/canrelay/copyright"

mkdir -p "$pkg/DEBIAN"
size_kib="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
# The libraries the bundled runtime and addons really need, with the C and C++ library floors, read from
# their ELF files (packaging/elf-depends.sh). A fixed floor claimed Debian 11 while the addons, then built
# against Debian 12's libraries, needed glibc 2.34: dpkg installed it there and the daemon could not start.
elfs=$(find "$pkg/opt" -type f \( -name '*.node' -o -path '*/node/bin/node' \))
[ -n "$elfs" ] || { echo "build-deb: no ELF file found in the staged tree" >&2; exit 1; }
# shellcheck disable=SC2086
libs=$(packaging/elf-depends.sh $elfs)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: canrelay
Version: $version-$rev
Architecture: $arch
Maintainer: canrelay maintainers <canrelay@localhost>
Installed-Size: $size_kib
Depends: $libs, passwd
Recommends: systemd, iproute2
Section: net
Priority: optional
Homepage: https://localhost/canrelay
Description: watch and bridge a CAN bus through a Linux gateway
 canrelay agent reads SocketCAN interfaces on a gateway, serves a live SSE console
 with resume, and relays frames to the canrelay cloud bridge; canrelay bridge runs
 in the cloud (behind nginx). Carries its own Node.js $NODE_VERSION runtime under
 /opt/canrelay/<version>/node (no system Node.js is used). Ships hardened systemd units (canrelay-agent.service,
 canrelay-agent@.service, canrelay-bridge.service), which are not enabled on install.
CONTROL
# Example configs are conffiles (dpkg keeps local edits); the operator's agent.json is not in the package.
( cd "$pkg" && find etc -type f | sed 's#^#/#' | sort ) > "$pkg/DEBIAN/conffiles"
for s in preinst postinst prerm postrm; do install -m 0755 "packaging/deb/$s" "$pkg/DEBIAN/$s"; done

deb="$out/canrelay_${version}-${rev}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
