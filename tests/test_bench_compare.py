"""bench/run.py compare: what it makes of two revisions' rounds (medians per side, B/A, each
side's ratio to its floor), and a real run of two revisions on a tiny case."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT


def _compare() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("compare")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _round(value: float, floor: float, status: str = "ok") -> dict[str, Any]:
    figure = {
        "name": "throughput",
        "unit": "jobs/s",
        "samples": [value],
        "floor": {"samples": [floor]},
        "ratio": {"samples": [value / floor]},
    }
    other = {"name": "hook", "status": "unavailable", "message": "not here\nmore", "figures": []}
    return {
        "cases": [
            {"name": "inmemory", "status": status, "message": "", "figures": [figure]},
            other,
        ]
    }


def test_summary_gives_medians_b_over_a_and_floor_ratios() -> None:
    compare = _compare()
    sides = {
        "A": [_round(10, 100), _round(30, 100), _round(20, 50)],
        "B": [_round(40, 100), _round(20, 100), _round(30, 60)],
    }
    rows = compare.summarize(sides)
    row = next(r for r in rows if r["figure"] == "throughput")
    assert row["a_median"] == 20 and row["b_median"] == 30
    assert row["b_over_a"] == pytest.approx(1.5)
    assert row["a_vs_floor"] == pytest.approx(0.3)  # median of 0.1, 0.3, 0.4
    assert row["b_vs_floor"] == pytest.approx(0.4)  # median of 0.4, 0.2, 0.5
    hook = next(r for r in rows if r["case"] == "hook")
    assert hook["figure"] == "" and hook["status"].startswith("not here")
    table = compare.render(rows, ("old", "new"))
    assert "inmemory" in table and "1.5" in table and "not run: not here" in table


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compare_runs_two_revisions_in_alternating_rounds(tmp_path: Path) -> None:
    """HEAD against itself, one tiny case, two rounds: both sides measured every round."""
    out = tmp_path / "compare.json"
    before = _worktrees()
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "compare", "HEAD", "HEAD", "--rounds", "2",
         "--cases", "inmemory", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    order = [
        line.split(": ")[1].strip(" .") for line in proc.stdout.splitlines() if "round " in line
    ]
    assert order == ["A", "B", "B", "A"]
    (row, *_) = [r for r in report["figures"] if r["figure"] == "throughput"]
    assert len(row["a_samples"]) == 2 and len(row["b_samples"]) == 2
    assert row["a_vs_floor"] > 0 and row["b_vs_floor"] > 0
    assert report["a"]["commit"] == report["b"]["commit"]
    assert not _worktrees() - before  # its two worktrees are removed after the run


def _worktrees() -> set[str]:
    listing = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line for line in listing.splitlines() if line.startswith("worktree ")}
