#!/usr/bin/env bash
# Installs Debian's `prometheus` package (prometheus + promtool) for the real-scrape test
# (tests/test_prometheus_scrape.py) when it is not already on PATH. Needs root (CI runs as root).
#   bash scripts/install-prometheus.sh
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "install-prometheus: $(command -v prometheus) already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends prometheus
# The package ships a service unit; without systemd nothing is started, and tests start
# their own server on 127.0.0.1 with a temporary data directory.
command -v prometheus >/dev/null 2>&1 || { echo "install-prometheus: prometheus not on PATH after install" >&2; exit 1; }
echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n1)"
