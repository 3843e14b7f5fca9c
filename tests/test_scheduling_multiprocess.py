"""Three real worker processes on one SQLite file: a one-second schedule is enqueued once
per slot with no gap, and an action with max_running=2 never runs more than twice at once,
as its handlers' own start/end lines show. Each process runs one job at a time, so two
`sync` jobs at once means two processes, and three would mean the limit failed."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from usvc_core import JobFilter, JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_sqlite import SqliteQueue

SERVICE_DIR = Path(__file__).parent / "services" / "scheduled"
SERVICE = "scheduled"
WORKERS = 3
RUN_SECONDS = float(os.environ.get("USVC_SCHEDULE_TEST_SECONDS", "20"))
SYNC_JOBS = 40
DEADLINE_SECONDS = 200.0


async def _all_work_seen(queue: SqliteQueue) -> bool:
    """Every sync job completed, and at least three tick slots enqueued."""
    stats = await queue.activity(SERVICE)
    sync_done = stats.counts.get("sync", {}).get(JobStatus.COMPLETED, 0)
    ticks = (
        await queue.list_jobs(JobFilter(SERVICE, actions=frozenset({"tick"})), limit=1000)
    ).jobs
    return sync_done == SYNC_JOBS and len(ticks) >= 3


def _start_worker(db: Path, events: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{db}",
        "MAX_CONCURRENT_JOBS": "1",
        "POLLING_INTERVAL_SECONDS": "0.2",
        "HTTP_ENABLED": "False",
        "DEV_MODE": "False",
        "LOG_CONSOLE_JSON": "True",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        "SCHEDULES": json.dumps({"tick": "* * * * * *"}),
        "EVENT_DIR": str(events),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "main.py"], cwd=SERVICE_DIR, env=env, stdout=out, stderr=out
        )


def _max_overlap(events: Path) -> tuple[int, int]:
    """(most sync handlers running at once, runs seen), from every process's lines."""
    points: list[tuple[float, int]] = []
    runs = 0
    for path in events.glob("sync-*.txt"):
        for line in path.read_text().splitlines():
            kind, _, at = line.split()
            points.append((float(at), 1 if kind == "start" else -1))
            runs += kind == "start"
    # An end and a start at the same instant: the end counts first.
    points.sort()
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak, runs


@pytest.mark.slow
async def test_slots_once_and_max_running_across_three_processes(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    events = tmp_path / "events"
    events.mkdir()
    queue = SqliteQueue(db)
    await queue.open()
    try:
        await queue.enqueue_many(
            [EnqueueRequest({"action": "sync", "seconds": 0.3}, SERVICE) for _ in range(SYNC_JOBS)]
        )
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        workers = [_start_worker(db, events, log) for log in logs]
        started = time.monotonic()
        try:
            # At least RUN_SECONDS, and on until every sync job completed and three tick slots
            # were enqueued: on a loaded machine the processes start and run slower than that
            # (DEADLINE_SECONDS only bounds the wait, below pytest's own timeout).
            while not (time.monotonic() - started >= RUN_SECONDS and await _all_work_seen(queue)):
                exited = [w.args for w in workers if w.poll() is not None]
                assert not exited, f"a worker exited early: {[p.read_text() for p in logs]}"
                assert time.monotonic() - started < DEADLINE_SECONDS, "work not done in time"
                await asyncio.sleep(0.5)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            codes = [w.wait(60) for w in workers]
        assert codes == [0] * WORKERS, [p.read_text()[-2000:] for p in logs]

        ticks = (
            await queue.list_jobs(JobFilter(SERVICE, actions=frozenset({"tick"})), limit=1000)
        ).jobs
        keys = [str(j.unique_key) for j in ticks]
        slots = sorted(datetime.fromisoformat(k.removeprefix("schedule:tick:")) for k in keys)
        assert len(keys) == len(set(keys))  # one job per slot
        expected = int((slots[-1] - slots[0]).total_seconds()) + 1
        gaps = [b for a, b in itertools.pairwise(slots) if b - a != timedelta(seconds=1)]
        assert gaps == [], f"slots missing before {gaps[:5]}"
        assert len(slots) == expected
        assert len(slots) >= 3  # something to compare; how many depends on start-up time
        done = [j for j in ticks if j.status is JobStatus.COMPLETED]
        runs = collections.Counter(
            line for p in events.glob("tick-*.txt") for line in p.read_text().splitlines()
        )
        assert all(runs[j.id] == 1 for j in done)
        assert sum(runs.values()) == len(done)  # no tick ran twice or outside the queue

        peak, sync_runs = _max_overlap(events)
        stats = await queue.activity(SERVICE)
        assert stats.counts["sync"].get(JobStatus.COMPLETED) == SYNC_JOBS
        assert sync_runs == SYNC_JOBS
        assert peak == 2  # reached, never exceeded
        sync_processes = sum(1 for p in events.glob("sync-*.txt") if p.read_text())
        assert sync_processes >= 2
        figures = {
            "workers": WORKERS,
            "seconds": RUN_SECONDS,
            "slots": len(slots),
            "slots_expected": expected,
            "duplicates": len(keys) - len(set(keys)),
            "gaps": len(gaps),
            "tick_runs": sum(runs.values()),
            "sync_jobs": SYNC_JOBS,
            "sync_peak_running": peak,
            "tick_processes": sum(1 for p in events.glob("tick-*.txt") if p.read_text()),
            "sync_processes": sync_processes,
        }
        print("schedule figures:", json.dumps(figures))
    finally:
        await queue.close()
