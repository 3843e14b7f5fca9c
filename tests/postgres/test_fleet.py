"""Fleet features on a real PostgreSQL server, across real worker processes (the SQLite
test tests/test_scheduling_multiprocess.py, on the networked queue): a one-second schedule
is enqueued exactly once per slot with no gap, and an action with max_running=2 never runs
more than twice at once across the processes, as its handlers' own start/end lines show.
Each process runs one job at a time, so two `sync` jobs at once means two processes."""

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
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pgserver import PgServer
from usvc_core import JobFilter, JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url

SERVICE_DIR = Path(__file__).resolve().parents[1] / "services" / "scheduled"
WORKERS = 3
#: how long the fleet runs once the first slot was enqueued (start-up takes what it takes)
RUN_SECONDS = float(os.environ.get("USVC_PG_FLEET_TEST_SECONDS", "8"))
SYNC_JOBS = 30


def _start_worker(
    server: PgServer, table: str, service: str, events: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MICROSERVICE_NAME": service,
        "QUEUE_URL": f"{server.url}?table={table}",
        "MAX_CONCURRENT_JOBS": "1",
        "POLLING_INTERVAL_SECONDS": "0.5",  # LISTEN/NOTIFY wakes them sooner
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
    points.sort()  # an end and a start at the same instant: the end counts first
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak, runs


@pytest.mark.slow
@pytest.mark.xdist_group("postgres_faults")  # with the fault tests: one worker, in turn
async def test_slots_once_and_max_running_across_processes_on_postgres(
    pg_server: PgServer, tmp_path: Path
) -> None:
    table = f"fleet_{uuid.uuid4().hex[:8]}"
    service = "scheduled"
    events = tmp_path / "events"
    events.mkdir()
    queue = PostgresQueue(**parse_postgres_url(pg_server.url), POSTGRES_TABLE=table)
    await queue.open()
    try:
        await queue.enqueue_many(
            [EnqueueRequest({"action": "sync", "seconds": 0.2}, service) for _ in range(SYNC_JOBS)]
        )
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        workers = [_start_worker(pg_server, table, service, events, log) for log in logs]
        ticks_only = JobFilter(service, actions=frozenset({"tick"}))
        started = None
        deadline = time.monotonic() + 90
        try:
            while started is None or time.monotonic() - started < RUN_SECONDS:
                if started is None and (await queue.list_jobs(ticks_only, limit=1)).jobs:
                    started = time.monotonic()
                assert time.monotonic() < deadline, "no slot enqueued in 90 s"
                exited = [w.args for w in workers if w.poll() is not None]
                assert not exited, f"a worker exited early: {[p.read_text() for p in logs]}"
                await asyncio.sleep(0.25)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            codes = [w.wait(60) for w in workers]
        assert codes == [0] * WORKERS, [p.read_text()[-2000:] for p in logs]

        ticks = (await queue.list_jobs(ticks_only, limit=1000)).jobs
        keys = [str(j.unique_key) for j in ticks]
        slots = sorted(datetime.fromisoformat(k.removeprefix("schedule:tick:")) for k in keys)
        assert len(keys) == len(set(keys))  # one job per slot
        expected = int((slots[-1] - slots[0]).total_seconds()) + 1
        gaps = [b for a, b in itertools.pairwise(slots) if b - a != timedelta(seconds=1)]
        assert gaps == [], f"slots missing before {gaps[:5]}"
        assert len(slots) == expected
        assert len(slots) >= 3
        done = [j for j in ticks if j.status is JobStatus.COMPLETED]
        runs = collections.Counter(
            line for p in events.glob("tick-*.txt") for line in p.read_text().splitlines()
        )
        assert all(runs[j.id] == 1 for j in done)
        assert sum(runs.values()) == len(done)  # no tick ran twice or outside the queue

        peak, sync_runs = _max_overlap(events)
        stats = await queue.activity(service)
        assert stats.counts["sync"].get(JobStatus.COMPLETED) == SYNC_JOBS
        assert sync_runs == SYNC_JOBS
        assert peak == 2  # reached, never exceeded
        assert sum(1 for p in events.glob("sync-*.txt") if p.read_text()) >= 2
        print(
            "postgres fleet figures:",
            json.dumps({"workers": WORKERS, "slots": len(slots), "sync_peak_running": peak}),
        )
    finally:
        await queue.close()
