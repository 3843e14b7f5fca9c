"""Shutdown suite: SIGTERM (a deploy) under load loses nothing and spends no attempt.

Running jobs finish within SHUTDOWN_TIMEOUT_SECONDS or go back to Ready; the process exits 0;
afterwards no job is Assigned or Processing. A second SIGTERM/SIGINT during the drain
shortens it, still without losing a job.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ServiceProcess, wait_until
from tests.reliability.conftest import JobsDb, read_executions
from tests.reliability.figures import record_figures

pytestmark = pytest.mark.slow

SHORT_JOBS = 1500
LONG_MS = 600_000  # far longer than any drain in these tests: these jobs must be released
MEDIUM_MS = 3_000  # running at SIGTERM, done well within the drain
DRAIN_SECONDS = 20
RELEASED = "released unfinished jobs back to Ready"


def _env(db: JobsDb, record_file: Path, shutdown_timeout: float) -> dict[str, str]:
    return {
        "QUEUE_URL": db.url,
        "DEV_MODE": "False",
        "MAX_CONCURRENT_JOBS": "8",
        "POLLING_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_TIMEOUT_SECONDS": str(shutdown_timeout),
        "LOG_CONSOLE_JSON": "True",
        "RELIABILITY_RECORD_FILE": str(record_file),
    }


def _started(record_file: Path, ids: set[str]) -> bool:
    return ids <= {e.job_id for e in read_executions(record_file) if e.mark == "S"}


def _assert_nothing_lost_or_spent(db: JobsDb, ids: list[str], long_ids: set[str]) -> Counter[str]:
    """No job owned, none failed; Completed ones ran once, Ready ones spent no attempt."""
    rows = db.rows(ids)
    statuses = Counter(r["status"] for r in rows.values())
    assert set(statuses) <= {"Ready", "Completed"}, statuses
    for job_id, row in rows.items():
        expected = 1 if row["status"] == "Completed" else 0
        assert row["attempts"] == expected, (job_id, row)
        if row["status"] == "Ready":
            assert row["lease_owner"] is None, (job_id, row)
    assert all(rows[j]["status"] == "Ready" for j in long_ids)
    return statuses


def test_sigterm_under_load_drains_and_releases(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """SIGTERM with every slot busy and a backlog: jobs that can finish within the drain
    finish and are recorded, the long ones are released with their attempt given back,
    nothing else is touched, exit code 0."""
    db = JobsDb(tmp_path / "jobs.db")
    record_file = tmp_path / "executions.log"
    db.create()
    # Claimed in this order (one transaction, same run_at, then by id): 3 long, 3 medium,
    # then short jobs flow through the last 2 of 8 slots.
    long_ids = db.enqueue([{"action": "work", "n": -i, "ms": LONG_MS} for i in range(1, 4)])
    medium_ids = db.enqueue([{"action": "work", "n": -i, "ms": MEDIUM_MS} for i in range(4, 7)])
    short_ids = db.enqueue([{"action": "work", "n": i, "ms": i % 50} for i in range(SHORT_JOBS)])
    ids = long_ids + medium_ids + short_ids
    svc = reliability_service(_env(db, record_file, shutdown_timeout=DRAIN_SECONDS))
    wait_until(lambda: _started(record_file, {*long_ids, *medium_ids}), timeout=60)
    wait_until(lambda: db.counts()["Completed"] >= 20, timeout=60)  # under load
    signalled_at = time.time()
    svc.signal(signal.SIGTERM)
    assert svc.wait(120) == 0

    statuses = _assert_nothing_lost_or_spent(db, ids, set(long_ids))
    executions = read_executions(record_file)
    started = {e.job_id for e in executions if e.mark == "S"}
    ended = {e.job_id: e.at for e in executions if e.mark == "E"}
    # The medium jobs were still running at SIGTERM and finished during the drain.
    assert all(ended[j] > signalled_at for j in medium_ids), "the drain was not exercised"
    # Every handler that started returned (except the long ones) and its result was kept.
    assert started - set(ended) == set(long_ids)
    rows = db.rows(ids)
    assert all(rows[j]["status"] == "Completed" for j in ended)
    lines = svc.json_lines()
    events = [line.get("event") for line in lines]
    assert events.index("signal received; shutting down") < events.index("worker stopped")
    released = [e["count"] for e in lines if e.get("event") == RELEASED]
    assert released == [len(long_ids)]
    record_figures(
        "shutdown",
        jobs=len(ids),
        finished_during_drain=sum(1 for t in ended.values() if t > signalled_at),
        completed_before_exit=statuses["Completed"],
        released_running_jobs=len(long_ids),
        left_ready_untouched=statuses["Ready"] - len(long_ids),
        attempts_spent_by_shutdown=0,
        exit_code=0,
    )


def test_a_second_signal_shortens_the_drain(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """SIGTERM then SIGINT while jobs run: the drain is cut short (well before its 600 s
    timeout), the jobs are released with no attempt spent, exit code 0."""
    db = JobsDb(tmp_path / "jobs.db")
    record_file = tmp_path / "executions.log"
    db.create()
    ids = db.enqueue([{"action": "work", "n": i, "ms": LONG_MS} for i in range(4)])
    svc = reliability_service(_env(db, record_file, shutdown_timeout=600))
    wait_until(lambda: _started(record_file, set(ids)), timeout=60)
    svc.signal(signal.SIGTERM)
    wait_until(
        lambda: any(e.get("event") == "draining running jobs" for e in svc.json_lines()),
        timeout=30,
    )
    assert svc.proc.poll() is None  # still draining: the jobs run for 10 minutes
    svc.signal(signal.SIGINT)
    # Without the second signal this would take the full 600 s drain.
    assert svc.wait(120) == 0
    _assert_nothing_lost_or_spent(db, ids, set(ids))
    lines = svc.json_lines()
    second = [e for e in lines if e.get("event") == "signal received; shutting down"]
    assert [(e["signal"], e["second"]) for e in second] == [("SIGTERM", False), ("SIGINT", True)]
    record_figures("shutdown_second_signal", jobs=len(ids), released=len(ids), exit_code=0)
