"""The ablation scripts (bench/sqlite_counts.py --ablate, bench/devjob_asgi.py's kinds) at
tiny sizes, so that they never rot. Figures are checked for presence, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT


def _run(*args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_sqlite_ablation_reports_every_variant() -> None:
    """Each variant drains every job in its own worker process and reports CPU and rate."""
    report = _run("bench/sqlite_counts.py", "--ablate", "--jobs", "1000", "--rounds", "1", "--json")
    assert list(report) == [
        "kit",
        "no INFO line",
        "no metrics",
        "no log context",
        "none of the three",
        "prototype",
    ]
    for row in report.values():
        assert len(row["samples"]) == 1
        assert row["jobs_per_second"] > 0 and row["rate_ratio"] > 0
        assert row["cpu_us_per_job"] > 0
    assert report["prototype"]["rate_ratio"] == 1.0


def test_sqlite_ablations_switch_their_part_off() -> None:
    """The monkeypatches the ablation applies in a worker process take the part away."""
    code = """
import sys
sys.path.insert(0, "bench")
import logging
import sqlite_drain
import usvc_core.app as app_module
import usvc_core.worker as worker_module
from usvc_core import ActionRegistry, WorkerConfig
from usvc_core.metrics import NullMetrics
from usvc_testing import InMemoryQueue

class Counting(NullMetrics):
    pass

sqlite_drain._ablate({"info line", "metrics", "log context"})
worker = worker_module.Worker(
    InMemoryQueue(), ActionRegistry(), WorkerConfig("svc"), metrics=Counting()
)
assert type(worker.metrics) is NullMetrics
assert app_module.configure_logging.keywords == {"level": logging.WARNING}
assert worker_module.bind_job_context("t", "id", "a") is None
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_devjob_asgi_reports_every_kind() -> None:
    """bare FastAPI, the kit and the kit at WARNING each answer 200 and report CPU."""
    report = _run("bench/devjob_asgi.py", "--rounds", "2", "--calls", "10", "--json")
    assert list(report["kinds"]) == ["bare", "kit", "kit-warning"]
    for row in report["kinds"].values():
        assert row["min_us"] > 0 and row["median_us"] >= row["min_us"]
