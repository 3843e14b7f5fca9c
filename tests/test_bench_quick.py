"""The benchmark harness (bench/run.py): its quick mode runs every case end to end, so the
harness never rots. Figures are checked for presence, never for speed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

CASES = [
    "inmemory",
    "inmemory_logs",
    "sqlite",
    "sqlite_depth",
    "postgres_depth",
    "devjob",
    "enqueue",
    "memory",
    "startup",
    "scaling",
    "cli",
    "schedule_cost",
]
SQLITE_CASES = {"sqlite", "sqlite_depth", "scaling"}
#: Cases whose script comes from another part of the kit: unavailable until it is there.
HOOKS = {
    "postgres_depth": "bench/postgres_depth.py",
    "schedule_cost": "bench/schedule_cost.py",
}


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_harness", ROOT / "bench" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_harness"] = module
    spec.loader.exec_module(module)
    return module


def _postgres_missing() -> str | None:
    """Why no PostgreSQL server can be started here (the tests' own check), or None."""
    path = ROOT / "packages" / "usvc-postgres" / "tests" / "pgserver.py"
    spec = importlib.util.spec_from_file_location("bench_quick_pgserver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reason: str | None = module.skip_reason()
    return reason


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_mode_completes_every_case(tmp_path: Path) -> None:
    """--quick runs each case once, prints each figure in the table and writes them as JSON."""
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    assert [c["name"] for c in report["cases"]] == CASES
    assert report["machine"]["nproc"] >= 1 and report["machine"]["python"]
    assert report["options"]["quick"] is True
    sqlite_here = (ROOT / "bench" / "sqlite_drain.py").exists()
    postgres_missing = _postgres_missing()
    for case in report["cases"]:
        hook = HOOKS.get(case["name"])
        if hook is not None and not (ROOT / hook).exists():
            assert case["status"] == "unavailable", case
            assert hook in case["message"], case
            continue
        if case["name"] == "postgres_depth" and postgres_missing:
            # No server binaries: the case says so (and how to install them), never fails.
            assert case["status"] == "unavailable", case
            assert "PostgreSQL not available" in case["message"], case
            assert "install-postgres" in case["message"], case
            continue
        if case["name"] in SQLITE_CASES and not sqlite_here:
            assert case["status"] == "unavailable", case
            assert "SQLite queue not available" in case["message"]
            assert any(
                line.startswith(case["name"]) and "UNAVAILABLE: SQLite queue not available" in line
                for line in proc.stdout.splitlines()
            ), proc.stdout
            continue
        assert case["status"] == "ok", case
        assert case["figures"], case
        for fig in case["figures"]:
            assert len(fig["samples"]) == 1 and fig["median"] > 0, fig
            if "floor" in fig:
                assert len(fig["floor"]["samples"]) == 1 and fig["ratio"]["median"] > 0, fig
            row = next(
                (
                    line
                    for line in proc.stdout.splitlines()
                    if f"{fig['name']} ({fig['unit']})" in line
                ),
                None,
            )
            assert row is not None and row.startswith(case["name"]), (fig["name"], proc.stdout)
    assert f"JSON: {out}" in proc.stdout


def test_unknown_case_is_refused() -> None:
    """A case name the harness does not know is an argument error that lists none run."""
    proc = _run("--cases", "inmemory,nope", "--quick")
    assert proc.returncode == 2
    assert "unknown case(s) nope" in proc.stderr
    assert "running" not in proc.stdout


def test_table_reports_ratio_and_missed_targets() -> None:
    """Each figure's row shows its median, its floor, the median ratio and whether it met."""
    h = _harness()
    case = h.CaseResult("demo", "a demo")
    fig = case.figure(
        "throughput",
        "jobs/s",
        floor_name="floor",
        targets=(h.Target("min", 100.0), h.Target("min", 0.5, "ratio")),
    )
    for value, floor in [(90.0, 300.0), (110.0, 200.0), (100.0, 250.0)]:
        fig.add(value, floor)
    table = h.render_table([case])
    row = next(line for line in table.splitlines() if line.startswith("demo"))
    assert "throughput (jobs/s)" in row and "100" in row and "250" in row
    assert "0.4" in row  # median of 0.3, 0.55, 0.4
    assert row.rstrip().endswith("MISSED")  # 100 >= 100 holds, 0.4 >= 0.5 does not
    data = fig.to_json()
    assert data["median"] == 100.0 and data["floor"]["median"] == 250.0
    assert [t["met"] for t in data["targets"]] == [True, False]


def test_table_shows_why_a_case_did_not_run() -> None:
    """A case that could not run appears with its status and message instead of figures."""
    h = _harness()
    case = h.CaseResult("sqlite", "d", status="unavailable", message="SQLite queue not available")
    assert "sqlite  UNAVAILABLE: SQLite queue not available" in h.render_table([case])
