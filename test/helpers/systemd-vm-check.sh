#!/usr/bin/env bash
# Runs inside systemd (canrelay-vmcheck.service, see systemd-vm-guest.sh): checks canrelay-agent.service as
# systemd itself started it — sandbox, seccomp filter, user namespace, no capabilities — on a real vcan0.
# Writes $OUT/checks.log and $OUT/result (pass|fail).
set -uo pipefail
OUT="${OUT:?}"
log="$OUT/checks.log"
: > "$log"
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*" >> "$log"; }
bad() { fail=$((fail + 1)); echo "FAIL $*" >> "$log"; }
prop() { systemctl show canrelay-agent.service -p "$1" --value; }

# After= orders this after the start job; waited for anyway (bounded), so a slow emulated start is not
# mistaken for a failure — a start that never completes still fails below.
for _ in $(seq 300); do [ "$(prop ActiveState)" = activating ] || break; sleep 1; done
state="$(prop ActiveState)/$(prop SubState)"
if [ "$state" = active/running ]; then ok "canrelay-agent.service active/running (Type=notify: READY=1 received)"; else bad "canrelay-agent.service is $state"; fi
status_text="$(prop StatusText)"
case "$status_text" in *"console listening on http://127.0.0.1:8080/"*) ok "StatusText: $status_text" ;; *) bad "StatusText: '$status_text'" ;; esac
pid="$(prop MainPID)"
[ "$pid" -gt 0 ] 2>/dev/null || { bad "no MainPID"; pid=1; }
if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'node .*dist/cli.js agent --config /etc/canrelay/agent.json'; then ok "MainPID $pid is node itself (the launcher execs)"; else bad "MainPID cmdline: $(tr '\0' ' ' < /proc/$pid/cmdline)"; fi
st="/proc/$pid/status"
grep -q '^Seccomp:[[:space:]]*2$' "$st" && ok "seccomp filter active (SystemCallFilter=)" || bad "seccomp: $(grep Seccomp: "$st")"
grep -q '^NoNewPrivs:[[:space:]]*1$' "$st" && ok "NoNewPrivs" || bad "NoNewPrivs: $(grep NoNewPrivs "$st")"
for c in CapEff CapPrm CapBnd CapAmb; do grep -q "^$c:[[:space:]]*0*$" "$st" && ok "$c empty" || bad "$c: $(grep "^$c" "$st")"; done
uid="$(id -u canrelay)"
grep -q "^Uid:[[:space:]]*$uid[[:space:]]" "$st" && ok "runs as canrelay ($uid)" || bad "$(grep Uid: "$st")"
# (PrivateUsers= is not set for the agent; in this guest, chrooted on an initramfs, the kernel would refuse it anyway.)
[ "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/1/ns/mnt)" ] && ok "own mount namespace (ProtectSystem=, PrivateTmp=)" || bad "no private mount namespace"
[ -d /var/lib/canrelay/agent ] && [ "$(stat -c %U:%a /var/lib/canrelay/agent)" = canrelay:750 ] && ok "StateDirectory /var/lib/canrelay/agent canrelay 0750" || bad "state dir: $(stat -c '%U %a' /var/lib/canrelay/agent 2>&1)"
[ -f /var/lib/canrelay/agent/agent.sqlite ] && ok "agent.sqlite in the state dir" || bad "no agent.sqlite: $(ls -la /var/lib/canrelay/agent 2>&1)"

# The console, live: frames sent on vcan0 with can-utils come out as can_frame events.
node - >> "$log" 2>&1 <<'JS' && ok "cansend on vcan0 → can_frame 0x123 on the console" || bad "no can_frame from vcan0 on the console"
const { execFileSync } = require('node:child_process');
(async () => {
  const ac = new AbortController();
  const res = await fetch('http://127.0.0.1:8080/api/v1/streams/dongles/vm-gw/console', { signal: ac.signal });
  if (res.status !== 200) throw new Error(`status ${res.status}`);
  const reader = res.body.getReader();
  let text = '';
  const sender = setInterval(() => execFileSync('cansend', ['vcan0', '123#DEADBEEF']), 100);
  const timer = setTimeout(() => { console.log('console got:', text.slice(0, 2000)); process.exit(1); }, 8000);
  while (!/"id":"0x123"[^\n]*"data_hex":"DE AD BE EF"/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
  clearInterval(sender); clearTimeout(timer); ac.abort();
  console.log('console line:', text.split('\n').find((l) => l.includes('0x123')));
  process.exit(0);
})().catch((e) => { console.log(String(e)); process.exit(1); });
JS

# Watchdog (WatchdogSec=12s in the test drop-in, a ping every 6 s): pings keep it alive; each one moves
# WatchdogTimestamp. Waited for up to 15 s (bounded), not a fixed sleep.
w1="$(prop WatchdogTimestampMonotonic)"; w2="$w1"
for _ in $(seq 15); do sleep 1; w2="$(prop WatchdogTimestampMonotonic)"; [ "$w2" -gt "$w1" ] 2>/dev/null && break; done
[ "$w2" -gt "$w1" ] 2>/dev/null && ok "watchdog pinged (WatchdogTimestamp moved $(( (w2 - w1) / 1000 )) ms)" || bad "watchdog timestamp did not move ($w1 → $w2)"
[ "$(prop NRestarts)" = 0 ] && [ "$(prop ActiveState)" = active ] && ok "no restart with a 12 s watchdog" || bad "restarts: $(prop NRestarts), $(prop ActiveState)"
mem="$(prop MemoryCurrent)"; echo "info MemoryCurrent $((mem / 1048576)) MiB (MemoryMax $(( $(prop MemoryMax) / 1048576 )) MiB)" >> "$log"

# Stop: SIGTERM → exit 0 within the stop timeout, STOPPING=1 seen.
t0=$(date +%s%N); systemctl stop canrelay-agent.service; t1=$(date +%s%N)
[ "$(prop Result)" = success ] && ok "stopped cleanly in $(( (t1 - t0) / 1000000 )) ms (Result=success)" || bad "stop: Result=$(prop Result)"
journalctl -u canrelay-agent.service -o cat --no-pager > "$OUT/agent-journal.log" 2>&1 || true
# A failed check, not an info line: logs that never reach the journal are a broken deployment.
grep -q '"msg":"console listening"' "$OUT/agent-journal.log" && ok "agent logs in the journal" || bad "agent logs not in the journal ($(wc -l < "$OUT/agent-journal.log") lines: $OUT/agent-journal.log)"
systemctl status canrelay-agent.service --no-pager -n 0 > "$OUT/agent-status.log" 2>&1 || true

# A bad config: exit 2, no restart loop (RestartPreventExitStatus=2).
cp /etc/canrelay/agent.json /etc/canrelay/agent.json.good
echo '{"id":"vm-gw","can":"vcan0","console-max-rat":1}' > /etc/canrelay/agent.json
systemctl start canrelay-agent.service 2>/dev/null
# Waited for (bounded: 60 s), not assumed: a restart loop would show as NRestarts > 0 by then.
for _ in $(seq 60); do [ "$(prop ActiveState)" = failed ] && break; sleep 1; done
[ "$(prop ExecMainStatus)" = 2 ] && [ "$(prop NRestarts)" = 0 ] && [ "$(prop ActiveState)" = failed ] && ok "bad config: exit 2, failed, not restarted" || bad "bad config: status $(prop ExecMainStatus) restarts $(prop NRestarts) $(prop ActiveState)"
mv /etc/canrelay/agent.json.good /etc/canrelay/agent.json

echo "$pass passed, $fail failed" >> "$log"
[ "$fail" -eq 0 ] && echo pass > "$OUT/result" || echo fail > "$OUT/result"
exit 0
