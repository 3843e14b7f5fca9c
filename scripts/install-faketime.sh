#!/usr/bin/env bash
# Installs Debian's `libfaketime` (the LD_PRELOAD library that skews one process's clock)
# for the clock-skew scheduling test (tests/test_scheduling_clock_skew.py) when it is
# missing. Needs root (CI runs as root).
#   bash scripts/install-faketime.sh
set -euo pipefail
LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ -e "$LIB" ]; then
  echo "install-faketime: $LIB already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends libfaketime
[ -e "$LIB" ] || { echo "install-faketime: $LIB missing after install" >&2; exit 1; }
echo "install-faketime: installed $LIB"
