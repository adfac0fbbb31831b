#!/usr/bin/env bash
# Starts a command the way systemd starts the canrelay units, as far as that works without systemd as
# PID 1 (this container has none):
#   unit-sandbox.sh <uid> <gid> <umask> [<writable dir>...] -- <command> [args...]
# In a private mount namespace: the root file system read-only (ProtectSystem=strict) except the
# writable dirs (StateDirectory=), a fresh /tmp (PrivateTmp=), empty /home, /root and /run/user
# (ProtectHome=); then setpriv: the uid/gid (User=, Group=), no supplementary groups, no capabilities in
# any set (CapabilityBoundingSet=, AmbientCapabilities=), no_new_privs (NoNewPrivileges=), the umask
# (UMask=), and exec all the way down: the command keeps this process's PID, like a unit's main PID.
# Paths the command needs must not lie under /tmp (it is replaced). Must run as root.
set -euo pipefail
if [ "${1:-}" = --inside ]; then
  shift
  uid=$1 gid=$2 umask=$3
  shift 3
  while [ $# -gt 0 ] && [ "$1" != -- ]; do mount --bind "$1" "$1"; shift; done
  shift
  mount -o remount,bind,ro /
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
  for h in /home /root /run/user; do
    if [ -d "$h" ]; then mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$h"; fi
  done
  exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs \
    --bounding-set=-all --inh-caps=-all --ambient-caps=-all \
    -- /bin/sh -c 'umask "$0" && exec "$@"' "$umask" "$@"
fi
exec unshare --mount --propagation private -- "$0" --inside "$@"
