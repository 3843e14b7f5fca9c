#!/usr/bin/env bash
# The reliability suites at full size (5,000 jobs in the kill suite, 200 hypothesis examples
# per property, a 10 s outage), then their figures as the table in docs/reliability.md.
#   bash scripts/reliability.sh
#   bash scripts/reliability.sh --jobs 1000 --examples 50 -- -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/dev.sh uv sync --frozen --quiet
exec bash scripts/dev.sh uv run --frozen python -m tests.reliability.run "$@"
