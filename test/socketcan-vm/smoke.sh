#!/usr/bin/env bash
# Guest script: proves the SocketCAN path inside the socketcan-vm guest.
#   bash test/socketcan-vm/run.sh test/socketcan-vm/smoke.sh
# 1. vcan0 (mtu 72, CAN FD) and vcan1 (mtu 16) via vcan-up.sh
# 2. can-utils: candump -L sees what cansend sends (std, ext, RTR, FD)
# 3. node + the real `socketcan` package from node_modules: smoke-node.mjs
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
ms()  { date +%s%3N; }

if [[ "${SOCKETCAN_VM:-}" != 1 ]]; then
  echo "smoke.sh: meant to run inside the VM: bash $HERE/run.sh $0" >&2
  exit 2
fi
echo "guest kernel $(uname -r), $(nproc) cpu, node $(node --version 2>/dev/null || echo missing)"

# --- interfaces --------------------------------------------------------------
"$HERE/vcan-up.sh" vcan0 vcan1:16
ip -details link show vcan0
if ip link show vcan0 | grep -q 'mtu 72'; then ok "vcan0 up with mtu 72"; else bad "vcan0 mtu"; fi
if ip link show vcan1 | grep -q 'mtu 16'; then ok "vcan1 up with mtu 16"; else bad "vcan1 mtu"; fi

# --- can-utils ---------------------------------------------------------------
log=/tmp/candump.log
candump -L vcan0 > "$log" 2>&1 &
dump=$!
sleep 0.5
cansend vcan0 123#DEADBEEF
cansend vcan0 1F334455#11
cansend vcan0 123#R
cansend vcan0 123##1112233
sleep 0.5
kill "$dump" 2>/dev/null || true
wait "$dump" 2>/dev/null || true
echo "candump -L vcan0:"; sed 's/^/  /' "$log"
# candump prints the FD flags nibble as the kernel delivers it: BRS (1) plus
# CANFD_FDF (4), which kernels >= 5.18 set on every FD frame => '123##5...'.
for want in ' vcan0 123#DEADBEEF$' ' vcan0 1F334455#11$' ' vcan0 123#R$' ' vcan0 123##[15]112233$'; do
  if grep -Eq -- "$want" "$log"; then ok "candump saw ${want# vcan0 }"; else bad "candump missed ${want# vcan0 }"; fi
done
if cansend vcan1 123##1112233 2>/dev/null; then bad "cansend of an FD frame on mtu-16 vcan1 should fail"; else ok "FD frame refused on mtu-16 vcan1"; fi

# --- node --------------------------------------------------------------------
t0=$(ms); node -e 0; t1=$(ms)
t2=$(ms); node -e 0; t3=$(ms)
echo "node start (node -e 0): first $((t1 - t0)) ms, second $((t3 - t2)) ms"
# loopback HTTP inside the guest (the agent's console is served on 127.0.0.1)
if node -e '
  const http = require("node:http");
  const srv = http.createServer((q, r) => r.end("pong")).listen(0, "127.0.0.1", async () => {
    const { port } = srv.address();
    const a = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    const b = await (await fetch(`http://localhost:${port}/`)).text().catch((e) => String(e));
    console.log(`http on 127.0.0.1:${port}: ${a}; via localhost: ${b}`);
    srv.close();
    process.exitCode = a === "pong" ? 0 : 1;
  });'; then ok "HTTP over loopback"; else bad "HTTP over loopback"; fi
if node "$HERE/smoke-node.mjs"; then ok "smoke-node.mjs"; else bad "smoke-node.mjs (exit $?)"; fi

echo "smoke: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
