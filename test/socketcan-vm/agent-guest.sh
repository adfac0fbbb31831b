#!/bin/sh
# Guest script for `make test-socketcan`: vcan0 (CAN FD) and vcan1, a socket receive buffer large enough
# for a cangen -g 0 burst (the socketcan addon reads in the event loop; the kernel drops what overflows
# a socket's queue — on a real gateway size net.core.rmem_default for the bus rate, see docs/deployment.md),
# then every check in one node process.
set -eu
here=$(dirname "$0")
bash "$here/vcan-up.sh" vcan0 vcan1
echo 33554432 > /proc/sys/net/core/rmem_max
echo 33554432 > /proc/sys/net/core/rmem_default
cd "$here/../.."
# Node starts take seconds under emulation: give processes longer to come up.
export TEST_START_TIMEOUT_MS=90000
exec node --test --test-force-exit --test-reporter=spec "$@" dist/test/socketcan-vm/guest-checks.js
