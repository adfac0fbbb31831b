#!/usr/bin/env bash
# `make uninstall`: removes every installed canrelay version under $PREFIX, the `current` symlink, the
# `canrelay` command, the units, the sysusers.d entry and the example configs. Keeps what the operator
# made: /etc/canrelay/*.json, tokens and env files, /var/lib/canrelay (state) and the canrelay user.
# On the live system (no DESTDIR, as root, systemd running) it stops and disables the services first.
# Environment: DESTDIR, PREFIX, BINDIR, UNITDIR, SYSUSERSDIR (as for install).
set -euo pipefail
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/opt/canrelay}"
BINDIR="${BINDIR:-/usr/local/bin}"
UNITDIR="${UNITDIR:-/lib/systemd/system}"
SYSUSERSDIR="${SYSUSERSDIR:-/usr/lib/sysusers.d}"
case "$PREFIX" in /*) ;; *) echo "uninstall: PREFIX must be an absolute path, got $PREFIX" >&2; exit 2 ;; esac
units=(canrelay-agent.service canrelay-agent@.service canrelay-bridge.service)

if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl stop 'canrelay-agent@*.service' canrelay-agent.service canrelay-bridge.service 2>/dev/null || true
  systemctl disable canrelay-agent.service canrelay-bridge.service 2>/dev/null || true
  for w in /etc/systemd/system/*.wants/canrelay-agent@*.service; do if [ -L "$w" ]; then rm -f "$w"; fi; done
fi

root="$DESTDIR$PREFIX"
# Only directories that canrelay-install made (VERSION + bin/canrelay-install inside), never a whole
# PREFIX that might hold other things.
if [ -d "$root" ]; then
  for d in "$root"/*/ "$root"/.*.tmp.* "$root"/.*.old.*; do
    d="${d%/}"
    if [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/VERSION" ] && [ -f "$d/bin/canrelay-install" ]; then
      rm -rf "$d"
      echo "removed $d"
    fi
  done
  if [ -L "$root/current" ]; then rm -f "$root/current"; fi
  rmdir "$root" 2>/dev/null || echo "kept $root (not empty)"
fi
link="$DESTDIR$BINDIR/canrelay"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/current/bin/canrelay" ]; then rm -f "$link"; fi
for u in "${units[@]}"; do rm -f "$DESTDIR$UNITDIR/$u"; done
rm -f "$DESTDIR$SYSUSERSDIR/canrelay.conf"
rm -f "$DESTDIR/etc/canrelay/agent.example.json" "$DESTDIR/etc/canrelay/bridge.example.json"
rmdir "$DESTDIR/etc/canrelay" 2>/dev/null || true

if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "uninstalled. Kept: /etc/canrelay (your configs and tokens), /var/lib/canrelay (state), the canrelay user (userdel canrelay removes it)."
