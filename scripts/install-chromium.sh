#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (Playwright drives it; its own browser
# download cannot work on machines without internet). Idempotent.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium.sh: not root; the browser test will skip" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "chromium: $(/usr/bin/chromium --version)"
