#!/usr/bin/env bash
# Builds every package on its own and installs the wheels together into a fresh virtual
# environment, with no index: version ranges between our packages are checked for real
# (uv's workspace lock does not check them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dist="$(mktemp -d)"
venv="$(mktemp -d)/venv"
trap 'rm -rf "$dist" "$(dirname "$venv")"' EXIT
packages=(usvc-core usvc-sqlite usvc-testing usvc-http usvc-oracle usvc-postgres usvc-mongo)
for p in "${packages[@]}"; do
  uv build --quiet --package "$p" --wheel -o "$dist"
done
ls "$dist"
uv venv --quiet "$venv"
# Our wheels come only from $dist; third-party dependencies from the package index.
uv pip install --quiet --python "$venv/bin/python" --find-links "$dist" \
  --no-sources "${packages[@]}"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import usvc_core, usvc_http, usvc_mongo, usvc_oracle, usvc_postgres, usvc_sqlite, usvc_testing  # noqa: F401
for name in ("usvc-core", "usvc-sqlite", "usvc-testing", "usvc-http", "usvc-oracle",
             "usvc-postgres", "usvc-mongo"):
    print(f"{name}=={md.version(name)} installed from its wheel")
eps = {ep.name for ep in md.entry_points(group="usvc.queues")}
assert {"memory", "sqlite", "oracle", "postgresql"} <= eps, eps
print("entry points:", sorted(eps))
PY

# A single-node production install: usvc-core + usvc-sqlite, no test runner, no usvc-testing.
prod="$(dirname "$venv")/prod"
uv venv --quiet "$prod"
uv pip install --quiet --python "$prod/bin/python" --find-links "$dist" --no-sources \
  usvc-core usvc-sqlite
"$prod/bin/python" - <<'PY'
import asyncio, importlib.util, tempfile, pathlib
assert importlib.util.find_spec("pytest") is None, "usvc-sqlite pulled pytest into a production install"
assert importlib.util.find_spec("usvc_testing") is None, "usvc-sqlite pulled usvc-testing in"
from usvc_core import EnqueueRequest
from usvc_sqlite import Durability, SqliteQueue

async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        q = SqliteQueue(pathlib.Path(d) / "jobs.db", durability=Durability.FULL)
        await q.open()
        job = await q.enqueue(EnqueueRequest(payload={"action": "a"}, microservice="m"))
        [claimed] = await q.claim_and_start("m", "w", 1, 30)
        assert claimed.id == job.id
        await q.complete(claimed, {"ok": True}, 1.0)
        await q.close()
asyncio.run(main())
print("usvc-core + usvc-sqlite: SqliteQueue works")
PY
# usvc-testing re-exports the SQLite queue without pulling pytest in.
uv pip install --quiet --python "$prod/bin/python" --find-links "$dist" --no-sources usvc-testing
"$prod/bin/python" -c "
import importlib.util
assert importlib.util.find_spec('pytest') is None, 'usvc-testing pulled pytest into a production install'
from usvc_testing import SqliteQueue
import usvc_sqlite
assert SqliteQueue is usvc_sqlite.SqliteQueue
print('usvc-testing without pytest re-exports SqliteQueue')
"
# With the extra, the plugin's fixtures and the contract suite are there.
uv pip install --quiet --python "$prod/bin/python" --find-links "$dist" --no-sources \
  "usvc-testing[pytest]"
"$prod/bin/python" -c "import usvc_testing.contract"
# (--fixtures collects nothing: pytest exits 5, which is fine here)
fixtures="$("$prod/bin/python" -m pytest -q --fixtures -p no:cacheprovider "$(dirname "$venv")" || true)"
grep -q usvc_fake_clock <<<"$fixtures"
echo "usvc-testing[pytest]: plugin fixtures and contract suite load"
# usvc-core's wheel installs the operator's command.
"$venv/bin/usvc" --version
# The dashboard's static files are package data of usvc-http's wheel.
"$venv/bin/python" -c "
from importlib.resources import files
static = files('usvc_http.admin').joinpath('static')
assert static.joinpath('app.js').is_file() and static.joinpath('app.css').is_file(), 'static files missing from the wheel'
print('usvc-http wheel carries the dashboard (app.js, app.css)')
"
