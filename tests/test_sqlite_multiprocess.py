"""Three real worker processes share one SQLite file: 20,000 jobs, each completed exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from usvc_core.jobs import JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_testing.queues import SqliteQueue

SERVICE_DIR = Path(__file__).parent / "services" / "counting"
SERVICE = "counting"
JOBS = 20_000
WORKERS = 3


def _start_worker(db: Path, count_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{db}",  # db is absolute: sqlite:////tmp/...
        "MAX_CONCURRENT_JOBS": "10",
        "POLLING_INTERVAL_SECONDS": "0.2",
        "HTTP_ENABLED": "False",
        "DEV_MODE": "False",
        "LOG_CONSOLE_JSON": "True",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        "COUNT_DIR": str(count_dir),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "main.py"], cwd=SERVICE_DIR, env=env, stdout=out, stderr=out
        )


async def _enqueue_all(queue: SqliteQueue) -> list[str]:
    ids: list[str] = []
    for start in range(0, JOBS, 1000):
        jobs = await queue.enqueue_many(
            [
                EnqueueRequest(payload={"action": "count", "n": n}, microservice=SERVICE)
                for n in range(start, start + 1000)
            ]
        )
        ids.extend(j.id for j in jobs)
    return ids


async def _wait_drained(queue: SqliteQueue, workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 600
    while True:
        stats = await queue.stats(SERVICE)
        if stats.counts[JobStatus.COMPLETED] + stats.counts[JobStatus.FAILED] >= JOBS:
            return
        exited = [w.args for w in workers if w.poll() is not None]
        assert not exited, f"a worker exited early: {exited}"
        assert time.monotonic() < deadline, f"not drained in time: {dict(stats.counts)}"
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_three_processes_complete_every_job_exactly_once(tmp_path: Path) -> None:
    """3 worker processes drain 20,000 jobs from one file: all Completed, each run once,
    none left behind, every process took part, and all exit 0 on SIGTERM."""
    db = tmp_path / "jobs.db"
    count_dir = tmp_path / "runs"
    count_dir.mkdir()
    queue = SqliteQueue(db)
    await queue.open()
    workers = [_start_worker(db, count_dir, tmp_path / f"worker-{i}.log") for i in range(WORKERS)]
    try:
        ids = await _enqueue_all(queue)  # while the workers already claim
        await _wait_drained(queue, workers)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = []
        for w in workers:
            try:
                codes.append(w.wait(60))
            except subprocess.TimeoutExpired:
                w.kill()
                codes.append(w.wait())
    stats = await queue.stats(SERVICE)
    await queue.close()
    logs = "\n".join((tmp_path / f"worker-{i}.log").read_text()[-2000:] for i in range(WORKERS))
    assert codes == [0] * WORKERS, logs

    assert {s: stats.counts[s] for s in JobStatus} == {
        JobStatus.READY: 0,
        JobStatus.ASSIGNED: 0,
        JobStatus.PROCESSING: 0,
        JobStatus.COMPLETED: JOBS,
        JobStatus.FAILED: 0,
    }
    runs: collections.Counter[str] = collections.Counter()
    per_process = []
    for file in sorted(count_dir.glob("runs-*.txt")):
        lines = file.read_text().split()
        per_process.append(len(lines))
        runs.update(lines)
    assert len(per_process) == WORKERS
    assert all(n > 0 for n in per_process), per_process
    assert set(runs) == set(ids)
    assert [job_id for job_id, n in runs.items() if n != 1] == []

    with sqlite3.connect(db) as conn:
        owners, attempts = conn.execute(
            "SELECT count(DISTINCT lease_owner), max(attempts) FROM usvc_jobs"
        ).fetchone()
    conn.close()
    assert (owners, attempts) == (WORKERS, 1)
