#!/bin/sh
# Guest script for `make test-socketcan`: vcan0 (CAN FD), vcan1 and vcan2 up, the emulated Kvaser
# controllers (SOCKETCAN_VM_KVASER=4 on the host: can0..can3, two per emulated bus) at 500 kbit/s, a
# socket receive buffer large enough for a cangen -g 0 burst (the socketcan addon reads in the event
# loop; the kernel drops what overflows a socket's queue — on a real gateway size net.core.rmem_default
# for the bus rate, see docs/deployment.md), then the checks: guest-checks.js (vcan) and
# bus-health-checks.js (real controller drivers), failure-checks.js (interfaces deleted and re-created, FD on
# a classic interface, a full transmit queue on kvaser_pci). GUEST_CHECKS (through SOCKETCAN_VM_PASSENV) picks files.
set -eu
here=$(dirname "$0")
bash "$here/vcan-up.sh" vcan0 vcan1 vcan2
for i in 0 1 2 3; do
  [ -e "/sys/class/net/can$i" ] || continue
  if [ "$i" = 0 ]; then restart="restart-ms 100"; else restart=""; fi
  # shellcheck disable=SC2086
  ip link set "can$i" type can bitrate 500000 $restart
  ip link set "can$i" up
done
echo 33554432 > /proc/sys/net/core/rmem_max
echo 33554432 > /proc/sys/net/core/rmem_default
cd "$here/../.."
# Node starts take seconds under emulation: give processes longer to come up.
export TEST_START_TIMEOUT_MS=90000
checks=${GUEST_CHECKS:-"guest-checks.js bus-health-checks.js failure-checks.js"}
files=""
for f in $checks; do files="$files build/test/socketcan-vm/$f"; done
# shellcheck disable=SC2086
exec node --test --test-force-exit --test-concurrency=1 --test-reporter=spec "$@" $files
