#!/usr/bin/env bash
# Debian's nginx for the dashboard's test behind a TLS-terminating proxy (the test writes
# its own config and throw-away certificate and runs nginx in the foreground). Idempotent.
set -euo pipefail
if [ -x /usr/sbin/nginx ]; then
  echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-nginx.sh: not root; the proxy test will skip" >&2
  exit 0
fi
apt-get update -qq
# nginx-light: the small build (http, ssl, proxy); openssl makes the test's certificate.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light openssl >/dev/null
# The test runs its own nginx; the distribution's service is not needed.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
