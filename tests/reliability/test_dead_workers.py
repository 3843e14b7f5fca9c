"""Dead workers noticed in seconds, with real processes and real signals on one SQLite
file, at the default lease (30 s) and heartbeat (``WORKER_HEARTBEAT_SECONDS``, 1.5 s).

- SIGKILL a worker holding jobs (three times): another worker runs them again about two
  heartbeats later, not a lease later.
- SIGSTOP a worker holding jobs until it is declared gone and its jobs are done by
  another worker, then SIGCONT: its late completion is refused (LeaseLostError) and its
  still-running handler is stopped at its first heartbeat back; every job keeps the
  outcome of the worker that took it over.

``USVC_DEAD_WORKER_HEARTBEAT`` sets the heartbeat of the SIGKILL test; ``0`` measures the
old behaviour (no worker records: the jobs wait for their lease to expire).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServiceProcess, wait_until
from tests.reliability.conftest import JobsDb, read_executions
from tests.reliability.figures import record_figures
from tests.reliability.test_kill import kill_inspecting

pytestmark = pytest.mark.slow

LEASE_SECONDS = 30.0  # the default: what a SIGKILLed worker's jobs waited for before
HEARTBEAT = float(os.environ.get("USVC_DEAD_WORKER_HEARTBEAT", "1.5"))
HELD = 4  # jobs the victim holds when it dies
ROUNDS = 3  # kills


def _env(db: JobsDb, record_file: Path, **extra: str) -> dict[str, str]:
    return {
        "QUEUE_URL": db.url,
        "DEV_MODE": "False",
        "MAX_CONCURRENT_JOBS": str(HELD),
        "POLLING_INTERVAL_SECONDS": "0.5",
        "LOG_CONSOLE_JSON": "True",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "RELIABILITY_RECORD_FILE": str(record_file),
        **extra,
    }


def _starts(record_file: Path) -> dict[str, list[tuple[float, int]]]:
    """job id -> [(time, pid)] of every handler start."""
    out: dict[str, list[tuple[float, int]]] = {}
    for e in read_executions(record_file):
        if e.mark == "S":
            out.setdefault(e.job_id, []).append((e.at, e.pid))
    return out


def _held_processing(db: JobsDb, proc: ServiceProcess, count: int) -> Callable[[], bool]:
    return lambda: list(db.owned_by(proc.proc.pid).values()).count("Processing") == count


def _holders(
    db: JobsDb, workers: list[ServiceProcess], count: int
) -> Callable[[], list[ServiceProcess]]:
    """The workers running ``count`` jobs, as a condition to wait for."""
    return lambda: [w for w in workers if _held_processing(db, w, count)()]


def _stop_all(*procs: ServiceProcess) -> None:
    for proc in procs:
        proc.signal(signal.SIGTERM)
    assert [proc.wait(60) for proc in procs] == [0] * len(procs)


def test_a_sigkilled_workers_jobs_run_again_within_two_heartbeats(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """Each round a worker is caught holding jobs (a minute's work each) and SIGKILLed; the
    other worker runs them again, and a fresh worker takes the dead one's place."""
    db = JobsDb(tmp_path / "jobs.db")
    db.create()
    record_file = tmp_path / "executions.log"
    env = _env(db, record_file, WORKER_HEARTBEAT_SECONDS=str(HEARTBEAT))
    workers = [reliability_service(env) for _ in range(2)]
    for proc in workers:
        proc.wait_healthy(60)
    recoveries: list[float] = []
    for _ in range(ROUNDS):
        time.sleep(2 * HEARTBEAT + 0.5)  # every worker's heartbeats and checks under way
        # Enqueued in one transaction: the first worker to claim takes them all.
        ids = db.enqueue([{"action": "linger", "seconds": 60} for _ in range(HELD)])
        [victim] = wait_until(_holders(db, workers, HELD), 30)
        [survivor] = [w for w in workers if w is not victim]
        kill = kill_inspecting(victim, db)
        assert sorted(kill.held) == sorted(ids)
        wait_until(lambda: db.unfinished() == 0, 2.5 * LEASE_SECONDS)
        rows = db.rows(ids)
        starts = _starts(record_file)
        for job_id in ids:
            assert rows[job_id]["status"] == "Completed"
            again = [at for at, pid in starts[job_id] if pid == survivor.proc.pid]
            assert again, f"job {job_id} was not run again by the survivor"
            recoveries.append(min(again) - kill.at)
            # Its attempt counted as the lease-expiry rules say (the contract tests pin them).
            assert json.loads(rows[job_id]["results"])["pid"] == survivor.proc.pid
        workers = [survivor, reliability_service(env)]
        workers[1].wait_healthy(60)
    _stop_all(*workers)
    if HEARTBEAT > 0:
        # Far inside the lease: the jobs did not wait for it to expire.
        assert max(recoveries) < LEASE_SECONDS / 2, recoveries
    else:
        assert max(recoveries) < 2 * LEASE_SECONDS, recoveries
    record_figures(
        "dead_worker_sigkill",
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=HEARTBEAT,
        kills=ROUNDS,
        jobs_held=len(recoveries),
        median_recovery_seconds=round(statistics.median(recoveries), 3),
        worst_recovery_seconds=round(max(recoveries), 3),
    )


def _logged(proc: ServiceProcess, event: str, job_id: str) -> dict[str, Any] | None:
    return next(
        (
            line
            for line in proc.json_lines()
            if line.get("event", "").startswith(event) and str(line.get("job_id")) == job_id
        ),
        None,
    )


def test_a_worker_frozen_past_the_gone_point_is_fenced_when_it_resumes(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    db = JobsDb(tmp_path / "jobs.db")
    db.create()
    record_file = tmp_path / "executions.log"
    env = _env(db, record_file)  # the default heartbeat
    workers = [reliability_service(env) for _ in range(2)]
    for proc in workers:
        proc.wait_healthy(60)
    # ``short`` ends while its worker is frozen; ``long`` is still running when it resumes.
    # Enqueued in one transaction, both go to the first worker that claims.
    short, long = db.enqueue(
        [{"action": "linger", "seconds": 4}, {"action": "linger", "seconds": 600}]
    )
    [frozen] = wait_until(_holders(db, workers, 2), 30)
    [other] = [w for w in workers if w is not frozen]
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.time()
    try:
        # Declared gone, its jobs are taken and finished by the other worker.
        wait_until(lambda: db.unfinished() == 0, LEASE_SECONDS / 2)
        taken_at = min(at for at, pid in _starts(record_file)[short] if pid == other.proc.pid)
        time.sleep(max(0.0, stopped_at + 5 - time.time()))  # past ``short``'s end
    finally:
        frozen.signal(signal.SIGCONT)
    resumed_at = time.time()

    # Its handler of ``short`` returns at once and its completion is refused...
    wait_until(lambda: _logged(frozen, "lease lost; outcome discarded", short) is not None, 30)
    # ...and its handler of ``long`` is stopped at its first heartbeat back.
    wait_until(lambda: _logged(frozen, "lease lost while running", long) is not None, 30)
    stopped = _logged(frozen, "lease lost while running", long)
    assert stopped is not None
    ends = {(e.job_id, e.pid) for e in read_executions(record_file) if e.mark == "E"}
    assert (short, frozen.proc.pid) in ends  # it did run to its end, too late
    assert (long, frozen.proc.pid) not in ends  # it never finished: stopped
    rows = db.rows([short, long])
    for job_id in (short, long):
        assert rows[job_id]["status"] == "Completed"
        assert json.loads(rows[job_id]["results"])["pid"] == other.proc.pid
    _stop_all(frozen, other)
    stopped_after = _stopped_seconds(stopped, resumed_at)
    record_figures(
        "dead_worker_sigstop",
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=1.5,
        taken_over_after_seconds=round(taken_at - stopped_at, 3),
        handler_stopped_after_resume_seconds=stopped_after,
    )


def _stopped_seconds(line: dict[str, Any], resumed_at: float) -> float | None:
    """Seconds from SIGCONT to the log line (its ISO timestamp), when the line has one."""
    stamp = line.get("timestamp")
    if not isinstance(stamp, str):
        return None
    return round(datetime.fromisoformat(stamp).timestamp() - resumed_at, 3)
