#!/usr/bin/env bash
# Installs Debian's `fuse3` (fusermount3 and libfuse3, which the mfusepy binding loads) for
# the power-loss suite (tests/powerloss) when it is missing. Needs root (CI runs as root).
#   bash scripts/install-fuse.sh
set -euo pipefail
if command -v fusermount3 >/dev/null 2>&1 && ldconfig -p | grep 'libfuse3\.so' >/dev/null; then
  echo "install-fuse: $(command -v fusermount3) and libfuse3 already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends fuse3
command -v fusermount3 >/dev/null 2>&1 || { echo "install-fuse: fusermount3 not on PATH after install" >&2; exit 1; }
echo "install-fuse: installed $(fusermount3 --version 2>&1 | head -n1)"
[ -e /dev/fuse ] || echo "install-fuse: no /dev/fuse on this machine: the power-loss suite will skip" >&2
