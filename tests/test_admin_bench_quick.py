"""bench/admin_queries.py runs end to end on a small file (its figures are for 1,000,000
jobs; this only keeps the script working): every query answers and finds what the file
holds, and the purge reports its stall."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_admin_benchmark_runs_on_a_small_file() -> None:
    out = subprocess.run(
        [sys.executable, "bench/admin_queries.py", "--jobs", "4000", "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = {
        line.split("  ")[0]: line
        for line in out.splitlines()
        if line.startswith(("list", "find", "get", "stats", "overview", "session"))
    }
    assert len(rows) == 25, out
    assert "50 jobs" in rows["list: Failed"]
    assert "0 jobs" in rows["list: an absent action"]
    assert "1 jobs" in rows["find: by idempotency key"]
    assert "purge:" in out and "the stall" in out
