#!/usr/bin/env bash
# Debian's PostgreSQL 15 server and PgBouncer for the usvc-postgres tests (the tests start
# their own server and bouncer in a temporary directory; nothing is started here). Idempotent.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
if [ -x "$bin/postgres" ] && command -v pgbouncer >/dev/null 2>&1; then
  echo "install-postgres: $("$bin/postgres" --version), $(pgbouncer --version | head -n1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-postgres.sh: not root; the PostgreSQL tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 pgbouncer >/dev/null
# The packages ship service units and a default cluster; without systemd nothing runs, and
# the tests never use them.
echo "install-postgres: $("$bin/postgres" --version), $(pgbouncer --version | head -n1)"
