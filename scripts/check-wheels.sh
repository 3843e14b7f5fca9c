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
packages=(usvc-core usvc-testing usvc-http usvc-oracle usvc-mongo)
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
import usvc_core, usvc_http, usvc_mongo, usvc_oracle, usvc_testing  # noqa: F401
for name in ("usvc-core", "usvc-testing", "usvc-http", "usvc-oracle", "usvc-mongo"):
    print(f"{name}=={md.version(name)} installed from its wheel")
eps = {ep.name for ep in md.entry_points(group="usvc.queues")}
assert {"memory", "sqlite", "oracle"} <= eps, eps
print("entry points:", sorted(eps))
PY
# usvc-core's wheel installs the operator's command.
"$venv/bin/usvc" --version
