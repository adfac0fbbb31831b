#!/usr/bin/env bash
# Run a script inside a throw-away qemu guest that boots Debian's own kernel
# (with SocketCAN, can-raw and vcan) and sees this machine's "/" read-only
# over 9p, so the guest runs the host's node, node_modules, can-utils, ...
#
#   test/socketcan-vm/run.sh <guest-script> [args...]
#   test/socketcan-vm/run.sh --prepare        # only install/download/build, no boot
#
# Exit status: the guest script's exit status; 124 when the VM timed out;
# 125 when the harness itself failed (setup error, or the guest never reported
# an exit code). See README.md beside this file.
#
# Environment knobs (all optional):
#   SOCKETCAN_VM_TIMEOUT   seconds for the whole VM run (default 600)
#   SOCKETCAN_VM_MEM       guest memory in MiB (default 1024)
#   SOCKETCAN_VM_SMP       guest CPUs (default 2)
#   SOCKETCAN_VM_ACCEL     tcg (default) or kvm
#   SOCKETCAN_VM_CPU       qemu -cpu model (default qemu64; "host" with kvm)
#   SOCKETCAN_VM_OUT       host directory to use as the guest's writable
#                          /run/results share; kept after the run (default: a
#                          temp dir that is removed)
#   SOCKETCAN_VM_PASSENV   space-separated names of host env vars to pass into
#                          the guest script's environment (CI is always passed)
#   SOCKETCAN_VM_CACHE     cache folder (default: <this dir>/cache)
#   SOCKETCAN_VM_EXTRA_MODULES  extra kernel modules to load in the guest
#   SOCKETCAN_VM_9P_CACHE  9p cache mode of the host-root share (default loose;
#                          "none" makes node start ~4x slower)
#   SOCKETCAN_VM_REFRESH=1 re-resolve linux-image-amd64 via apt instead of
#                          using the cached kernel as is
#   SOCKETCAN_VM_PVH=0     boot the compressed bzImage instead of the extracted
#                          vmlinux (PVH entry); ~4.5 s slower under TCG
#   SOCKETCAN_VM_KVASER=n  add n emulated Kvaser PCIcan (SJA1000) controllers,
#                          two per emulated CAN bus: can0..can<n-1> in the guest
#   SOCKETCAN_VM_HOSTFWD="tcp:127.0.0.1:<host port>-:<guest port> ..."  give the guest an
#                          eth0 (10.0.2.15, qemu user networking, restrict=on: no way out) with
#                          these host ports forwarded into it; without it the guest has loopback only
#   SOCKETCAN_VM_QUIET=1   do not echo the guest console (it is still saved in
#                          <cache>/last-console.log)
set -euo pipefail
shopt -s extglob

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
CACHE="${SOCKETCAN_VM_CACHE:-$HERE/cache}"
TIMEOUT="${SOCKETCAN_VM_TIMEOUT:-600}"
MEM="${SOCKETCAN_VM_MEM:-1024}"
SMP="${SOCKETCAN_VM_SMP:-2}"
ACCEL="${SOCKETCAN_VM_ACCEL:-tcg}"
if [[ "$ACCEL" == kvm ]]; then CPU="${SOCKETCAN_VM_CPU:-host}"; else CPU="${SOCKETCAN_VM_CPU:-qemu64}"; fi
HARNESS_FAIL=125

log() { printf '[socketcan-vm] %s\n' "$*" >&2; }
die() { printf '[socketcan-vm] ERROR: %s\n' "$*" >&2; exit "$HARNESS_FAIL"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

usage() {
  cat >&2 <<EOF
usage: $0 <guest-script> [args...]
       $0 --prepare
Runs <guest-script> as root inside a qemu guest with SocketCAN (see $HERE/README.md).
EOF
  exit 2
}

[[ $# -ge 1 ]] || usage
ORIG_ARGS=("$@")
PREPARE_ONLY=0
case "$1" in
  -h|--help) usage ;;
  --prepare) PREPARE_ONLY=1; shift ;;
esac

T_START="$(now)"
if [[ $PREPARE_ONLY == 0 ]]; then
  [[ -f "$1" ]] || die "guest script not found: $1"
fi

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 hosts are supported (found $(uname -m))"
command -v dpkg-query >/dev/null || die "this harness needs a Debian/Ubuntu host (dpkg/apt)"

# --------------------------------------------------------------------------
# 1. host packages
# --------------------------------------------------------------------------
APT_UPDATED=0
# Concurrent runs (or other apt users) wait for dpkg's lock instead of failing.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root)
apt_quiet() {  # run apt-get quietly; show its output only when it fails
  local out rc=0
  out="$(mktemp)"
  DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" "$@" >"$out" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 20 "$out" >&2; }
  rm -f "$out"
  return "$rc"
}
apt_update_once() {
  [[ $APT_UPDATED == 1 ]] && return 0
  log "apt-get update"
  apt_quiet update || die "apt-get update failed"
  APT_UPDATED=1
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

ensure_pkgs() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}) and not root: install them with apt-get first"
  log "installing: ${missing[*]}"
  # Try without refreshing first (lists may already be current), then refresh once.
  if ! apt_quiet install -y --no-install-recommends "${missing[@]}" 2>/dev/null; then
    apt_update_once
    apt_quiet install -y --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
  fi
}

# qemu-system-x86: the VM; busybox-static: the initramfs userland; kmod: depmod/
# modprobe --show-depends against the guest's module tree; cpio: the initramfs;
# iproute2 + can-utils: used by guest scripts through the 9p view of the host.
ensure_pkgs qemu-system-x86 busybox-static kmod cpio iproute2 can-utils
for c in qemu-system-x86_64 depmod modprobe cpio gzip flock timeout; do
  command -v "$c" >/dev/null || die "'$c' not found after installing packages"
done
# the static busybox (/bin/busybox on bookworm, /usr/bin/busybox on merged-/usr releases)
BUSYBOX="$(dpkg-query -L busybox-static 2>/dev/null | grep -E '^(/usr)?/bin/busybox$' | head -n1 || true)"
[[ -n "$BUSYBOX" && -x "$BUSYBOX" ]] || die "no busybox binary found in package busybox-static"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # serialise kernel download / initramfs build between concurrent runs
rm -rf "$CACHE"/.dl.* "$CACHE"/.initramfs.* "$CACHE"/kernel/*.tmp   # leftovers of killed runs

# --------------------------------------------------------------------------
# 2. the kernel: the package linux-image-amd64 depends on, unpacked into the cache
# --------------------------------------------------------------------------
resolve_kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 ~ /^(Pre)?Depends:$/ && $2 ~ /^linux-image-/ { print $2; exit }'
}
pkg_version() {
  apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}
newest_cached_kernel() {
  local d best=""
  for d in "$CACHE"/kernel/*/; do
    [[ -f "$d/.ok" ]] || continue
    [[ -z "$best" || "$d" -nt "$best" ]] && best="$d"
  done
  [[ -z "$best" ]] || printf '%s\n' "${best%/}"
}

# Decompress the bzImage payload into an ELF vmlinux (like the kernel's
# scripts/extract-vmlinux), only for kernels with CONFIG_PVH=y; best effort.
extract_vmlinux() {  # $1 bzImage, $2 config, $3 output
  grep -qx 'CONFIG_PVH=y' "$2" 2>/dev/null || return 0
  local magic tool off
  for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    tool="${magic%%:*}"
    command -v "$tool" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "${magic#*:}" "$1" 2>/dev/null | cut -d: -f1 | head -n 3); do
      tail -c "+$((off + 1))" "$1" | "$tool" -dc 2>/dev/null > "$3.tmp" || true
      if [[ "$(head -c 4 "$3.tmp" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
        mv "$3.tmp" "$3"; return 0
      fi
    done
  done
  rm -f "$3.tmp"
  log "note: could not extract an ELF vmlinux; booting the bzImage (slower under TCG)"
}

# Fast path: a cached kernel is used as is (apt-cache costs ~2 s); set
# SOCKETCAN_VM_REFRESH=1 to re-resolve linux-image-amd64 and update the cache.
KPKG=""
KDIR=""
if [[ "${SOCKETCAN_VM_REFRESH:-0}" != 1 ]]; then KDIR="$(newest_cached_kernel)"; fi
if [[ -z "$KDIR" ]]; then KPKG="$(resolve_kernel_pkg || true)"; fi
if [[ -z "$KDIR" && -z "$KPKG" ]]; then
  KDIR="$(newest_cached_kernel)"
  if [[ -z "$KDIR" ]]; then
    apt_update_once
    KPKG="$(resolve_kernel_pkg || true)"
    [[ -n "$KPKG" ]] || die "cannot find the kernel package: 'apt-cache depends linux-image-amd64' names no linux-image-* package (are Debian's apt sources configured?)"
  else
    log "linux-image-amd64 not resolvable from apt lists; using cached kernel $(basename "$KDIR")"
  fi
fi
if [[ -z "$KDIR" ]]; then
  KVER_PKG="$(pkg_version "$KPKG")"
  [[ -n "$KVER_PKG" ]] || die "apt-cache show $KPKG gave no version"
  KDIR="$CACHE/kernel/${KPKG}_${KVER_PKG}"
  if [[ ! -f "$KDIR/.ok" ]]; then
    log "fetching kernel package $KPKG $KVER_PKG"
    tmpd="$(mktemp -d "$CACHE/.dl.XXXXXX")"
    chmod 755 "$tmpd"
    download() { (cd "$tmpd" && apt_quiet download "$1" 2>/dev/null); }
    if ! download "$KPKG"; then
      apt_update_once
      KVER_PKG="$(pkg_version "$KPKG")"
      KDIR="$CACHE/kernel/${KPKG}_${KVER_PKG}"
      download "$KPKG" || { rm -rf "$tmpd"; die "apt-get download $KPKG failed (kernel package for linux-image-amd64)"; }
    fi
    rm -rf "$KDIR.tmp"; mkdir -p "$KDIR.tmp"
    dpkg-deb -x "$tmpd"/*.deb "$KDIR.tmp/root"
    rm -rf "$tmpd"
    if ! ls "$KDIR.tmp"/root/boot/vmlinuz-* >/dev/null 2>&1; then
      # A signed meta package without an image would name its -unsigned twin.
      rm -rf "$KDIR.tmp"
      die "$KPKG contains no /boot/vmlinuz-*; cannot boot it"
    fi
    # modules live in /lib/modules (bookworm) or /usr/lib/modules (newer,
    # merged-/usr packages): make both paths work for whichever kmod we have.
    r="$KDIR.tmp/root"
    if [[ -d "$r/usr/lib/modules" && ! -e "$r/lib/modules" ]]; then
      mkdir -p "$r/lib"; ln -s ../usr/lib/modules "$r/lib/modules"
    elif [[ -d "$r/lib/modules" && ! -e "$r/usr/lib/modules" ]]; then
      mkdir -p "$r/usr/lib"; ln -s ../../lib/modules "$r/usr/lib/modules"
    fi
    kver="$(ls -1 "$r/lib/modules/" 2>/dev/null | head -n1)"
    [[ -n "$kver" ]] || die "$KPKG contains no /lib/modules/<version>"
    depmod -b "$KDIR.tmp/root" "$kver"
    printf '%s\n' "$kver" > "$KDIR.tmp/.ok"
    rm -rf "$KDIR"; mv "$KDIR.tmp" "$KDIR"
    # keep only this kernel in the cache
    for old in "$CACHE"/kernel/*/; do
      [[ "${old%/}" == "$KDIR" ]] || rm -rf "${old%/}"
    done
    rm -f "$CACHE"/initramfs-*.cpio.gz
  fi
fi
KROOT="$KDIR/root"
KVER="$(cat "$KDIR/.ok")"
VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
[[ -f "$VMLINUZ" ]] || die "kernel image $VMLINUZ missing (delete $CACHE and retry)"
# Boot the uncompressed ELF through qemu's PVH entry when we have it: under TCG
# the bzImage's own xz decompression costs ~4.5 s per boot.
if [[ ! -e "$KDIR/vmlinux" && ! -e "$KDIR/.no-vmlinux" ]]; then
  extract_vmlinux "$VMLINUZ" "$KROOT/boot/config-$KVER" "$KDIR/vmlinux"
  [[ -e "$KDIR/vmlinux" ]] || touch "$KDIR/.no-vmlinux"
fi
BOOT_KERNEL="$VMLINUZ"
if [[ -s "$KDIR/vmlinux" && "${SOCKETCAN_VM_PVH:-1}" == 1 ]]; then BOOT_KERNEL="$KDIR/vmlinux"; fi

# --------------------------------------------------------------------------
# 3. the initramfs: static busybox, the modules, and /init
# --------------------------------------------------------------------------
# Required modules (a build fails without them) and optional ones (warned).
REQ_MODULES=(virtio_pci 9pnet_virtio 9p can can-raw can-dev vcan)
read -r -a EXTRA_MODULES <<<"${SOCKETCAN_VM_EXTRA_MODULES:-}"
# virtio_net: the guest's eth0 for SOCKETCAN_VM_HOSTFWD; sch_tbf: a token-bucket qdisc that paces a
# controller's transmit queue to a real bus's frame rate (the emulated SJA1000 sends at once); sch_netem:
# a queue that holds frames, as a bus nobody acknowledges does (paced-queue.ts).
OPT_MODULES=(virtio-rng can-bcm can-gw vxcan kvaser_pci virtio_net sch_tbf sch_netem "${EXTRA_MODULES[@]}")

INIT_SCRIPT='#!/bin/sh
# /init of the socketcan-vm initramfs (generated by test/socketcan-vm/run.sh)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "[vm-init] $*"; }
up() { cut -d" " -f1 /proc/uptime; }
echo
say "init started at $(up)s (kernel uptime)"
fail() {
  say "FATAL: $*"
  [ -d /results/.vm ] && echo "init: $*" > /results/.vm/init-error
  poweroff -f
  sleep 5
}
while read -r m; do
  insmod "/lib/modules/$m" || say "insmod $m failed"
done < /modules.list
ip link set lo up || say "cannot bring lo up"
# eth0 exists only with SOCKETCAN_VM_HOSTFWD (qemu user networking): its fixed guest address
if [ -e /sys/class/net/eth0 ]; then
  ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up || say "cannot configure eth0"
fi
hostname socketcan-vm
mkdir -p /results /newroot /host
OPTS=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$OPTS,cache=none" results /results || fail "cannot mount results share"
[ -f /results/.vm/launch.sh ] || fail "no launch.sh in results share"
mount -t 9p -o "$OPTS,cache=${ROOTCACHE:-loose},ro" hostroot /newroot || fail "cannot mount host root"
# private second view of the host root, to re-expose paths hidden by tmpfs mounts
mount --bind /newroot /host
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
if [ -f /results/.vm/binds ]; then
  while read -r p; do
    [ -n "$p" ] && [ -d "/host$p" ] || continue
    mkdir -p "/newroot$p" && mount --bind "/host$p" "/newroot$p" || say "cannot re-expose $p"
  done < /results/.vm/binds
fi
mkdir -p /newroot/run/results
mount --bind /results /newroot/run/results
say "starting guest script at $(up)s"
echo "$(up)" > /results/.vm/t-script-start
chroot /newroot /bin/bash /run/results/.vm/launch.sh </dev/null
rc=$?
echo "$(up)" > /results/.vm/t-script-end
echo "$rc" > /results/.vm/exitcode
sync
say "guest script exited with $rc at $(up)s; powering off"
poweroff -f
sleep 5
'


build_initramfs() {
  local out="$1" stage m line path base n=0
  stage="$(mktemp -d "$CACHE/.initramfs.XXXXXX")"
  mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules,results,newroot,host}
  cp "$BUSYBOX" "$stage/bin/busybox"
  local applet
  for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$stage/bin/$applet"
  done
  mknod -m 600 "$stage/dev/console" c 5 1
  mknod -m 666 "$stage/dev/null" c 1 3
  printf '%s' "$INIT_SCRIPT" > "$stage/init"
  chmod 755 "$stage/init"

  local -A seen=()
  : > "$stage/modules.list"
  add_module() {  # $1 = module name, $2 = required|optional
    local deps
    if ! deps="$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$1" 2>&1)"; then
      [[ "$2" == required ]] && die "kernel $KVER has no module '$1': $deps"
      log "note: optional module '$1' not available in $KVER"
      return 0
    fi
    while read -r line; do
      case "$line" in
        builtin\ *) continue ;;
        insmod\ *) path="$(awk '{ print $2 }' <<<"$line")" ;;
        *) continue ;;
      esac
      [[ -n "${seen[$path]:-}" ]] && continue
      seen[$path]=1
      if [[ ! -f "$path" ]]; then
        # pruned from the cache by an earlier run: fetch the kernel again
        [[ -f "$KDIR/.pruned" ]] && { MISSING_MODULE="$path"; return 0; }
        die "module file $path missing"
      fi
      USED_MODULE_FILES+=("$path")
      n=$((n + 1))
      base="$(basename "$path")"
      base="$(printf '%02d-%s' "$n" "${base%%.ko*}").ko"
      case "$path" in
        *.ko) cp "$path" "$stage/lib/modules/$base" ;;
        *.ko.xz) command -v xz >/dev/null || ensure_pkgs xz-utils; xz -dc "$path" > "$stage/lib/modules/$base" ;;
        *.ko.zst) command -v zstd >/dev/null || ensure_pkgs zstd; zstd -qdc "$path" > "$stage/lib/modules/$base" ;;
        *.ko.gz) gzip -dc "$path" > "$stage/lib/modules/$base" ;;
        *) die "unknown module file type: $path" ;;
      esac
      printf '%s\n' "$base" >> "$stage/modules.list"
    done <<<"$deps"
  }
  for m in "${REQ_MODULES[@]}"; do add_module "$m" required; done
  for m in "${OPT_MODULES[@]}"; do add_module "$m" optional; done
  if [[ -n "$MISSING_MODULE" ]]; then rm -rf "$stage"; return 3; fi

  (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
     | cpio --null -o -H newc --quiet -R 0:0 | gzip -1) > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
}

IR_KEY="$( { printf '%s\n' "$KVER" "${REQ_MODULES[*]}" "${OPT_MODULES[*]}" "$INIT_SCRIPT"; sha256sum "$BUSYBOX"; } | sha256sum | cut -c1-16)"
INITRD="$CACHE/initramfs-$KVER-$IR_KEY.cpio.gz"
if [[ ! -f "$INITRD" ]]; then
  log "building initramfs for $KVER"
  rm -f "$CACHE"/initramfs-*.cpio.gz
  USED_MODULE_FILES=()
  MISSING_MODULE=""
  if ! build_initramfs "$INITRD"; then
    [[ -n "$MISSING_MODULE" && -z "${SOCKETCAN_VM_REFETCHED:-}" ]] || die "initramfs build failed"
    log "module $MISSING_MODULE was pruned from the cache: fetching the kernel package again"
    rm -rf "$KDIR"
    exec 9>&-
    SOCKETCAN_VM_REFETCHED=1 exec bash "$0" "${ORIG_ARGS[@]}"
  fi
  # Prune the unpacked package (~400 MB) to what the initramfs needs plus the
  # CAN/virtio/9p module folders; a later build that needs more refetches it.
  if [[ ! -f "$KDIR/.pruned" ]]; then
    mdir="$KROOT/lib/modules/$KVER"
    keep="$(mktemp -d "$CACHE/.dl.XXXXXX")"
    for f in "${USED_MODULE_FILES[@]}"; do
      mkdir -p "$keep/$(dirname "${f#"$mdir"/}")"; cp -p "$f" "$keep/${f#"$mdir"/}"
    done
    for d in drivers/virtio net/9p fs/9p fs/netfs fs/fscache net/can drivers/net/can drivers/char/hw_random; do
      [[ -d "$mdir/kernel/$d" ]] && { mkdir -p "$keep/kernel/$(dirname "$d")"; cp -a "$mdir/kernel/$d" "$keep/kernel/$d"; }
    done
    rm -rf "${mdir:?}/kernel" "${KROOT:?}/usr/share" "${KROOT:?}/boot/System.map-$KVER"
    cp -a "$keep/kernel" "$mdir/kernel"
    rm -rf "$keep"
    touch "$KDIR/.pruned"
  fi
fi
flock -u 9

T_READY="$(now)"
log "kernel $KVER ready ($(elapsed "$T_START" "$T_READY")s setup)"
if [[ $PREPARE_ONLY == 1 ]]; then
  log "prepared: $BOOT_KERNEL, $INITRD"
  exit 0
fi

# --------------------------------------------------------------------------
# 4. the guest script, and the results share that carries it into the guest
# --------------------------------------------------------------------------
SCRIPT="$(realpath "$1")"; shift
CWD="$(pwd -P)"

if [[ -n "${SOCKETCAN_VM_OUT:-}" ]]; then
  mkdir -p "$SOCKETCAN_VM_OUT"
  RES="$(cd "$SOCKETCAN_VM_OUT" && pwd -P)"
  rm -rf "$RES/.vm"
  KEEP_RES=1
else
  RES="$(mktemp -d "${TMPDIR:-/tmp}/socketcan-vm.XXXXXX")"
  KEEP_RES=0
fi
chmod 755 "$RES"
mkdir -p "$RES/.vm"
QPID=""
cleanup() {
  if [[ -n "$QPID" ]] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null || true; fi
  rm -rf "${FIFO_DIR:-}"
  [[ $KEEP_RES == 1 ]] || rm -rf "$RES"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Paths the guest's tmpfs on /tmp and /run would hide (e.g. a checkout under
# /tmp): the init re-exposes them from the 9p root by bind mounts.
: > "$RES/.vm/binds"
for p in "$REPO" "$CWD" "$(dirname "$SCRIPT")"; do
  case "$p" in
    /tmp|/tmp/*|/run|/run/*|/dev/shm|/dev/shm/*) printf '%s\n' "$p" >> "$RES/.vm/binds" ;;
  esac
done

{
  echo '#!/bin/bash'
  echo '# generated by test/socketcan-vm/run.sh; runs inside the guest chroot'
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  echo 'export HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb'
  printf 'export SOCKETCAN_VM=1 SOCKETCAN_VM_RESULTS=/run/results SOCKETCAN_VM_DIR=%q SOCKETCAN_VM_REPO=%q\n' "$HERE" "$REPO"
  for v in CI ${SOCKETCAN_VM_PASSENV:-}; do
    [[ "$v" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad name in SOCKETCAN_VM_PASSENV: $v"
    if [[ -n "${!v+x}" ]]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
  done
  printf 'cd %q 2>/dev/null || cd /\n' "$CWD"
  if [[ -x "$SCRIPT" ]]; then
    printf 'exec %q' "$SCRIPT"
  else
    printf 'exec /bin/bash %q' "$SCRIPT"
  fi
  for a in "$@"; do printf ' %q' "$a"; done
  echo
} > "$RES/.vm/launch.sh"

# --------------------------------------------------------------------------
# 5. boot
# --------------------------------------------------------------------------
QEMU=(qemu-system-x86_64
  -accel "$ACCEL" -machine pc -cpu "$CPU" -smp "$SMP" -m "$MEM"
  -nographic -no-reboot -nodefaults -serial stdio
  -kernel "$BOOT_KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=4 panic=-1 ROOTCACHE=${SOCKETCAN_VM_9P_CACHE:-loose}"
  -device virtio-rng-pci
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
  -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
  -fsdev "local,id=results,path=$RES,security_model=none,multidevs=remap"
  -device "virtio-9p-pci,fsdev=results,mount_tag=results"
)
# Real CAN controllers: SOCKETCAN_VM_KVASER=<n> adds n emulated Kvaser PCIcan (SJA1000) boards, two per
# emulated bus (can0+can1 share one bus, can2+can3 the next, ...); the guest's kvaser_pci driver names
# them in PCI order. A frame sent on one arrives on its partner, with real controller state, error
# counters, bit timing and the driver's one-frame transmit buffer.
for ((k = 0; k < ${SOCKETCAN_VM_KVASER:-0}; k++)); do
  (( k % 2 == 0 )) && QEMU+=(-object "can-bus,id=canbus$((k / 2))")
  QEMU+=(-device "kvaser_pci,canbus=canbus$((k / 2))")
done

# Host ports forwarded into the guest (a host-side test reaching a guest server): qemu's user
# networking, restrict=on (the guest reaches nothing outside; the forwards still work).
if [[ -n "${SOCKETCAN_VM_HOSTFWD:-}" ]]; then
  netdev="user,id=net0,restrict=on"
  for f in $SOCKETCAN_VM_HOSTFWD; do
    [[ "$f" =~ ^tcp:127\.0\.0\.1:[0-9]+-:[0-9]+$ ]] || die "SOCKETCAN_VM_HOSTFWD: expected tcp:127.0.0.1:<host port>-:<guest port>, got $f"
    netdev+=",hostfwd=$f"
  done
  QEMU+=(-netdev "$netdev" -device virtio-net-pci,netdev=net0)
fi

CONSOLE_LOG="$RES/.vm/console.log"
log "booting guest ($ACCEL, $SMP cpu, ${MEM} MiB, timeout ${TIMEOUT}s): $SCRIPT $*"
FIFO_DIR="$(mktemp -d)"
mkfifo "$FIFO_DIR/console"
T_BOOT="$(now)"
HOST_T_INIT=""
# qemu runs in the background (so a TERM/INT to run.sh can stop it through the
# EXIT trap); its console comes back through a fifo to the loop below.
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$FIFO_DIR/console" 2>&1 &
QPID=$!
: > "$CONSOLE_LOG"
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line//$'\r'/}"
  # drop SeaBIOS's terminal escapes (ESC c, ESC [ ... letter)
  if [[ "$line" == *$'\e'* ]]; then
    line="${line//$'\e'c/}"
    line="${line//$'\e'\[+([0-9;?])[a-zA-Z]/}"
    line="${line//$'\e'\[[a-zA-Z]/}"
  fi
  if [[ -z "$HOST_T_INIT" && "$line" == *"[vm-init] init started"* ]]; then
    HOST_T_INIT="$EPOCHREALTIME"
  fi
  printf '%s\n' "$line" >> "$CONSOLE_LOG"
  [[ "${SOCKETCAN_VM_QUIET:-0}" == 1 ]] || printf '%s\n' "$line"
done < "$FIFO_DIR/console"
QSTATUS=0
wait "$QPID" || QSTATUS=$?
QPID=""
rm -rf "$FIFO_DIR"
cp "$CONSOLE_LOG" "$CACHE/last-console.log" 2>/dev/null || true
T_END="$(now)"

timing="host boot->init $( [[ -n $HOST_T_INIT ]] && elapsed "$T_BOOT" "$HOST_T_INIT" || echo '?')s"
if [[ -f $RES/.vm/t-script-start && -f $RES/.vm/t-script-end ]]; then
  timing+=", guest script $(elapsed "$(cat "$RES/.vm/t-script-start")" "$(cat "$RES/.vm/t-script-end")")s"
fi
timing+=", VM total $(elapsed "$T_BOOT" "$T_END")s, run.sh total $(elapsed "$T_START" "$T_END")s"

if [[ -f "$RES/.vm/exitcode" ]]; then
  RC="$(tr -dc '0-9' < "$RES/.vm/exitcode")"
  [[ -n "$RC" ]] || RC=$HARNESS_FAIL
  log "guest script exit code $RC ($timing)"
  exit "$RC"
fi
if [[ $QSTATUS -eq 124 || $QSTATUS -eq 137 ]]; then
  log "ERROR: the VM timed out after ${TIMEOUT}s (SOCKETCAN_VM_TIMEOUT) without the guest script finishing ($timing)"
  exit 124
fi
if [[ -f "$RES/.vm/init-error" ]]; then
  log "ERROR: guest init failed: $(cat "$RES/.vm/init-error")"
fi
log "ERROR: the guest reported no exit code (qemu exit status $QSTATUS; console saved in $CACHE/last-console.log) ($timing)"
exit "$HARNESS_FAIL"
