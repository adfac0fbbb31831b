#!/usr/bin/env bash
# Create and bring up virtual CAN interfaces (inside the socketcan-vm guest, or
# on any host whose kernel has vcan).
#   vcan-up.sh [NAME[:MTU]]...     default: vcan0 ; MTU 72 (CAN FD) unless given
#   vcan-up.sh vcan0 vcan1:16      -> vcan0 CAN FD capable, vcan1 classic only
# An existing interface is reconfigured (mtu) and brought up.
set -euo pipefail
[[ $# -gt 0 ]] || set -- vcan0
for spec in "$@"; do
  name="${spec%%:*}"
  mtu=72
  [[ "$spec" == *:* ]] && mtu="${spec#*:}"
  case "$mtu" in 16|72) ;; *) echo "vcan-up.sh: MTU must be 16 (classic CAN) or 72 (CAN FD), got '$mtu'" >&2; exit 2 ;; esac
  if ! ip link show dev "$name" >/dev/null 2>&1; then
    ip link add dev "$name" type vcan
  fi
  ip link set dev "$name" down
  ip link set dev "$name" mtu "$mtu"
  ip link set dev "$name" up
done
