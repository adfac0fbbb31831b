#!/usr/bin/env bash
# Guest script for test/socketcan-vm/run.sh (a throw-away qemu guest with Debian's kernel, SocketCAN and
# this machine's root over 9p, read-only): runs the installed canrelay units under a real systemd 252 as
# PID 1 of a fresh PID namespace, with a real vcan0, and lets test/helpers/systemd-vm-check.sh look.
#   test/socketcan-vm/run.sh test/helpers/systemd-vm-guest.sh <DESTDIR of make install, outside /tmp>
# Results: /run/results/systemd-vm/ (the harness's results share).
set -euo pipefail
DESTDIR="${1:?usage: systemd-vm-guest.sh <destdir>}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
OUT=/run/results/systemd-vm
mkdir -p "$OUT"
say() { echo "[systemd-vm] $*"; }

# The bus.
ip link add dev vcan0 type vcan
ip link set vcan0 up

# Writable places on the read-only root, the way an installed gateway has them.
mount -t tmpfs -o mode=0755 tmpfs /mnt
mkdir -p /mnt/opt /mnt/etc /mnt/var
# /opt/canrelay = the installed tree (bound before /var/tmp is covered: DESTDIR may live there).
mount -t tmpfs -o mode=0755 tmpfs /opt
mkdir -p /opt/canrelay
mount --bind "$DESTDIR/opt/canrelay" /opt/canrelay
mkdir -p /mnt/stage
cp -a "$DESTDIR/lib/systemd/system" "$DESTDIR/etc/canrelay" "$DESTDIR/usr/lib/sysusers.d" /mnt/stage/
# /etc writable: an overlay on the 9p root (a copy is the fallback; it is slow under TCG).
mkdir -p /mnt/etc/upper /mnt/etc/work
if ! mount -t overlay overlay -o lowerdir=/etc,upperdir=/mnt/etc/upper,workdir=/mnt/etc/work /etc 2>/dev/null; then
  say "no overlayfs on 9p: copying /etc"
  cp -a /etc/. /mnt/etc/upper/
  mount --bind /mnt/etc/upper /etc
fi
for d in /var/lib /var/log /var/tmp /var/cache; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
chmod 1777 /var/tmp
mkdir -p /var/lib/systemd /var/log/journal
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup

# What the package does: the units, the sysusers entry (→ the canrelay user), the example configs.
cp /mnt/stage/system/canrelay-*.service /etc/systemd/system/
mkdir -p /etc/canrelay
cp /mnt/stage/canrelay/*.example.json /etc/canrelay/
systemd-sysusers /mnt/stage/sysusers.d/canrelay.conf
getent passwd canrelay
: > /etc/machine-id

# The operator's part: a config for the agent on vcan0.
cat > /etc/canrelay/agent.json <<'JSON'
{ "id": "vm-gw", "can": "vcan0", "listen": "127.0.0.1:8080", "presence-interval": 5, "log-level": "info" }
JSON
# The watchdog shortened so the test sees pings within its wait (the shipped unit says 30 s), but not to
# 4 s: each ping spawns systemd-notify, which under TCG on a loaded host took seconds, and the agent was
# killed by its watchdog right after its start (no log line of its own: CI saw it in about 1 run of 10,
# once blamed on After=time-sync.target). The start timeout raised for emulation too (node took over 30 s
# to start: killed and restarted once).
mkdir -p /etc/systemd/system/canrelay-agent.service.d
printf '[Service]\nWatchdogSec=12s\nTimeoutStartSec=300s\n' > /etc/systemd/system/canrelay-agent.service.d/50-vm-test.conf

# The test target: the agent, then the checker, which powers the container off when done.
cat > /etc/systemd/system/canrelay-vmtest.target <<UNIT
[Unit]
Description=canrelay VM test
Wants=canrelay-agent.service canrelay-vmcheck.service
UNIT
cat > /etc/systemd/system/canrelay-vmcheck.service <<UNIT
[Unit]
Description=canrelay VM test checks
After=canrelay-agent.service
[Service]
Type=oneshot
Environment=OUT=$OUT
ExecStart=/bin/bash $HERE/systemd-vm-check.sh
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console
StandardError=journal+console
UNIT

say "starting systemd $(systemctl --version | head -n1 | cut -d' ' -f2) as PID 1 of a new PID namespace"
set +e
# The harness runs this script chrooted; a chrooted process may not create user namespaces
# (PrivateUsers=), so systemd gets a mount namespace whose root really is this root (pivot_root).
mkdir -p /mnt/root /mnt/oldroot
timeout -k 5 300 unshare --pid --fork --mount --propagation private -- /bin/bash -c '
  set -e
  mount --rbind / /mnt/root
  cd /mnt/root
  pivot_root . mnt/oldroot
  umount -l /mnt/oldroot
  mount -t proc proc /proc
  unshare --user true && echo "[systemd-vm] user namespaces: ok" || echo "[systemd-vm] user namespaces: NOT available"
  exec env -i container=canrelay-vm-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --unit=canrelay-vmtest.target --log-level=${SYSTEMD_VM_LOG_LEVEL:-notice} --log-target=console --show-status=no
' > "$OUT/systemd-console.log" 2>&1
rc=$?
set -e
say "systemd exited with $rc"
tail -n 40 "$OUT/systemd-console.log" | sed 's/^/  | /'
[ -f "$OUT/result" ] || { say "no result from the checks"; exit 1; }
cat "$OUT/checks.log"
[ "$(cat "$OUT/result")" = pass ]
