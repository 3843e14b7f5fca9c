#!/usr/bin/env bash
# One entry point for a fresh machine: finds Python 3.12+, installs uv if missing, syncs the
# workspace, then runs what was asked.
#   bash scripts/dev.sh example   # the greeting example in dev mode on http://127.0.0.1:8000
#   bash scripts/dev.sh test      # the whole test suite (what CI runs), in parallel (pytest-xdist)
#   bash scripts/dev.sh lint      # ruff + mypy
#   bash scripts/dev.sh wheels    # build each package alone, co-install the wheels in a fresh venv
#   bash scripts/dev.sh test-py313  # the package unit suites on Python 3.13
#   bash scripts/dev.sh uv ARGS   # any uv command with the same interpreter settings
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export UV_PYTHON_DOWNLOADS=never
if [ -z "${UV_PYTHON:-}" ]; then
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
                   "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3; do
    if [ -x "$candidate" ]; then UV_PYTHON="$candidate"; break; fi
  done
fi
if [ -z "${UV_PYTHON:-}" ]; then
  for name in python3.12 python3.13 python3; do
    if command -v "$name" >/dev/null && "$name" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      UV_PYTHON="$(command -v "$name")"; break
    fi
  done
fi
[ -n "${UV_PYTHON:-}" ] || { echo "dev.sh: no Python 3.12+ found (set UV_PYTHON)" >&2; exit 1; }
export UV_PYTHON

if ! command -v uv >/dev/null 2>&1 || ! uv --version >/dev/null 2>&1; then
  "$UV_PYTHON" -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$("$UV_PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi
UV=(uv)
uv --version >/dev/null 2>&1 || UV=("$UV_PYTHON" -m uv)

# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set, every Python process a
# test starts would otherwise compile all its imports again (about a second of CPU each).
sync() { "${UV[@]}" sync --frozen --quiet --compile-bytecode; }

cmd="${1:-help}"; shift || true
case "$cmd" in
  example)
    sync
    cd examples/greeting
    [ -f .env ] || cp .env.example .env
    exec "${UV[@]}" run --frozen python main.py "$@"
    ;;
  test)
    sync
    if [ "$#" -eq 0 ]; then
      # The whole suite, with the core's coverage gate, on one pytest-xdist worker per CPU
      # and one more: many tests wait on real processes, leases and heartbeats, so a third
      # worker on two CPUs finishes sooner (4.5 against 5.5 minutes). USVC_TEST_WORKERS
      # overrides (a number, or 0 for one process). Tests marked xdist_group run on one
      # worker, one after the other (--dist loadgroup).
      workers="${USVC_TEST_WORKERS:-$(( $(nproc 2>/dev/null || echo 1) + 1 ))}"
      exec "${UV[@]}" run --frozen pytest -n "$workers" --dist loadgroup \
        --cov=usvc_core --cov-report=term --cov-fail-under=90
    fi
    exec "${UV[@]}" run --frozen pytest "$@"
    ;;
  test-py313)
    # The unit suites again on Python 3.13, in a separate environment.
    py313=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 "$(command -v python3.13 || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ]; then py313="$candidate"; break; fi
    done
    [ -n "$py313" ] || { echo "dev.sh: no Python 3.13 found" >&2; exit 1; }
    export UV_PYTHON="$py313" UV_PROJECT_ENVIRONMENT="$root/.venv-py313"
    "${UV[@]}" sync --frozen --quiet
    exec "${UV[@]}" run --frozen pytest -q -p no:cacheprovider packages/usvc-core/tests packages/usvc-http/tests packages/usvc-testing/tests packages/usvc-sqlite/tests "$@"
    ;;
  wheels)
    sync
    exec bash scripts/check-wheels.sh
    ;;
  lint)
    sync
    "${UV[@]}" run --frozen ruff check .
    "${UV[@]}" run --frozen ruff format --check .
    "${UV[@]}" run --frozen mypy
    ;;
  uv)
    exec "${UV[@]}" "$@"
    ;;
  *)
    sed -n '2,8p' "$0"
    ;;
esac
