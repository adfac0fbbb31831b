#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt is configured with: the first non-security repository apt
# knows (apt-get indextargets). packaging/sysroot.sh fetches the oldest supported Debian's libraries from
# it, and the deploy tests build a root of that Debian (debootstrap) from it.
set -euo pipefail
mirror="$(apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 2>/dev/null | awk '$1 !~ /security/ && $2 !~ /-/ { print $1; exit }')"
[ -n "$mirror" ] || { echo "no Debian repository is configured for apt (see /etc/apt/sources.list*): run apt-get update" >&2; exit 1; }
echo "$mirror"
