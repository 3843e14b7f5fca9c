#!/usr/bin/env bash
# The power-loss suite (tests/powerloss) at full size: 100 power cuts with durability=full,
# 30 with durability=normal, 300 jobs enqueued between two cuts. Prints the figures that
# docs/reliability.md quotes ("reliability figures: {...}" lines).
#   bash scripts/powerloss.sh
#   USVC_POWERLOSS_CUTS=20 USVC_POWERLOSS_NORMAL_CUTS=10 bash scripts/powerloss.sh -x
#   USVC_POWERLOSS_SEED=1234 bash scripts/powerloss.sh   # replay one run's cut points
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export USVC_POWERLOSS_CUTS="${USVC_POWERLOSS_CUTS:-100}"
export USVC_POWERLOSS_NORMAL_CUTS="${USVC_POWERLOSS_NORMAL_CUTS:-30}"
export USVC_POWERLOSS_JOBS_PER_CUT="${USVC_POWERLOSS_JOBS_PER_CUT:-300}"
bash scripts/dev.sh uv sync --frozen --quiet
exec bash scripts/dev.sh uv run --frozen pytest -p no:cacheprovider -q -s --timeout=3600 tests/powerloss "$@"
