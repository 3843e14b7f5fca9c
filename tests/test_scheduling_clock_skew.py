"""A real worker process whose clock runs 3 s fast (libfaketime) on an SQLite file: no
slot is enqueued before the store's time reaches it (issue 24 item 4).

The store's clock of an SQLite file is the file system's (``SqliteQueue.store_now``: a
write's modification time), which a process's skew does not reach. libfaketime is told
not to shift ``stat`` results (``NO_FAKE_STAT=1``): it fakes what the process reads from
its own clock, as a fast host clock would, not the times the file system records.

This (unskewed) test process watches the table every 20 ms and notes when each slot's
job first appears, on the real clock: a job enqueued at its slot's real time or later is
first seen at or after the slot; the old scheduler enqueued it 3 s early."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from usvc_sqlite import SqliteQueue

SERVICE_DIR = Path(__file__).parent / "services" / "scheduled"
SERVICE = "scheduled"
SKEW_SECONDS = 3
RUN_SECONDS = float(os.environ.get("USVC_SKEW_TEST_SECONDS", "12"))
DEADLINE_SECONDS = 200.0
FAKETIME_LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not FAKETIME_LIBS, reason="libfaketime missing: bash scripts/install-faketime.sh"
    ),
]


def _seen(db: Path) -> list[str]:
    # WAL mode: a reader never waits for the worker's writes.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(
            "SELECT unique_key FROM usvc_jobs WHERE unique_key LIKE 'schedule:tick:%'"
        ).fetchall()
    return [str(key) for (key,) in rows]


async def test_a_fast_worker_clock_waits_for_the_store(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    queue = SqliteQueue(db)
    await queue.open()  # the schema, before the worker and the watcher
    await queue.close()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "LD_PRELOAD": FAKETIME_LIBS[0],
        "FAKETIME": f"+{SKEW_SECONDS}s",
        "NO_FAKE_STAT": "1",
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{db}",
        "POLLING_INTERVAL_SECONDS": "0.2",
        "HTTP_ENABLED": "False",
        "DEV_MODE": "False",
        "LOG_CONSOLE_JSON": "True",
        "SCHEDULES": json.dumps({"tick": "*/2 * * * * *"}),
        "EVENT_DIR": str(tmp_path),
    }
    first_seen: dict[str, float] = {}
    with log.open("wb") as out:
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
            [sys.executable, "main.py"], cwd=SERVICE_DIR, env=env, stdout=out, stderr=out
        )
    try:
        started = time.monotonic()
        # At least RUN_SECONDS, and on until two slots were seen: a loaded machine starts the
        # worker slower (DEADLINE_SECONDS only bounds the wait, below pytest's timeout).
        while time.monotonic() - started < RUN_SECONDS or len(first_seen) < 2:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - started < DEADLINE_SECONDS, log.read_text()[-3000:]
            keys = _seen(db)
            now = time.time()
            for key in keys:
                first_seen.setdefault(key, now)
            await asyncio.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    early = {}
    for key, seen in first_seen.items():
        slot = datetime.fromisoformat(key.removeprefix("schedule:tick:")).timestamp()
        if seen < slot:
            early[key] = round(slot - seen, 3)
    assert len(first_seen) >= 2, (first_seen, text[-3000:])
    assert early == {}, f"enqueued before the store's time reached the slot: {early}"
    # The worker saw its clock run ahead of the store's, and waited.
    assert "runs ahead of the store" in text, text[-3000:]
    print(
        "clock-skew figures:",
        json.dumps({"skew_seconds": SKEW_SECONDS, "slots": len(first_seen), "early": 0}),
        datetime.now(UTC).isoformat(),
    )
