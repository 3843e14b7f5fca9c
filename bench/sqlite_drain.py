"""Benchmark (not a test): how fast one worker process drains no-op jobs from an SQLite file,
next to the floor that the adapter's own statements allow.

    uv run python bench/sqlite_drain.py                 # 20,000 jobs, durability=full
    uv run python bench/sqlite_drain.py --quick         # 2,000 jobs
    uv run python bench/sqlite_drain.py --jobs 5000 --durability normal

End to end: N no-op jobs are enqueued, then one real worker process (``Application`` with
``MAX_CONCURRENT_JOBS=10``, QUEUE_URL on the file, JSON logs to /dev/null, no HTTP) drains
them. Its rate is N over the time from the first job's start to the last job's finish,
both read from the rows (SQLite's clock), so process start-up is not counted.

Floor: on a fresh file with the same N jobs and the same durability mode, one thread runs
the adapter's own statements in a bare blocking ``sqlite3`` loop, ten jobs at a time: the
claim statement in one transaction, then the start and complete statements of those ten
in a second one. Each transaction uses the ``PRAGMA synchronous`` level the adapter uses
for it. The ratio is end-to-end over floor.

``run()`` returns the figures for a harness (``bench/run.py``); ``main()`` prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel
from usvc_core import Application, action
from usvc_core.ports import EnqueueRequest
from usvc_testing.queues import SqliteQueue
from usvc_testing.queues.sqlite import Durability
from usvc_testing.queues.sqlite.connection import synchronous_for
from usvc_testing.queues.sqlite.statements import CLAIM, COMPLETE, START

__all__ = ["DrainResult", "main", "run"]

SERVICE = "bench-noop"
BATCH = 10
TARGET_JOBS_PER_SECOND = 5000.0
TARGET_RATIO = 0.25


@dataclass(frozen=True, slots=True)
class DrainResult:
    """The figures of one run."""

    jobs: int
    durability: str
    concurrency: int
    end_to_end_jobs_per_second: float
    floor_jobs_per_second: float
    ratio: float
    transactions: int  #: commits the worker's queue made (group commit shares them)
    machine: str

    @property
    def meets_target(self) -> bool:
        return (
            self.end_to_end_jobs_per_second >= TARGET_JOBS_PER_SECOND and self.ratio >= TARGET_RATIO
        )


async def _fill(path: Path, jobs: int, durability: str) -> None:
    queue = SqliteQueue(path, durability=durability)
    await queue.open()
    try:
        for start in range(0, jobs, 1000):
            await queue.enqueue_many(
                [
                    EnqueueRequest(payload={"action": "noop", "n": n}, microservice=SERVICE)
                    for n in range(start, min(start + 1000, jobs))
                ]
            )
    finally:
        await queue.close()


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM usvc_jobs WHERE microservice = ? GROUP BY status",
            (SERVICE,),
        ).fetchall()
    conn.close()
    return dict(rows)


def _drain_seconds(path: Path) -> float:
    with sqlite3.connect(path) as conn:
        first, last = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM usvc_jobs WHERE microservice = ?",
            (SERVICE,),
        ).fetchone()
    conn.close()
    return float(last - first)


def end_to_end(path: Path, jobs: int, durability: str, concurrency: int) -> tuple[float, int]:
    """Drain ``jobs`` no-op jobs through one worker process; (jobs/s, commits it made)."""
    asyncio.run(_fill(path, jobs, durability))
    stats_file = path.with_suffix(".stats.json")
    env = {
        **os.environ,
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{path.resolve()}?durability={durability}",
        "MAX_CONCURRENT_JOBS": str(concurrency),
        "POLLING_INTERVAL_SECONDS": "0.5",
        "HTTP_ENABLED": "False",
        "LOG_CONSOLE_JSON": "True",
        "DEV_MODE": "False",
        "BENCH_STATS_FILE": str(stats_file),
    }
    worker = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        env=env,
        cwd=path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + max(120.0, jobs / 100)
        while _counts(path).get("Completed", 0) < jobs:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited early: {worker.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained in time: {_counts(path)}")
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    transactions = json.loads(stats_file.read_text())["transactions"] if stats_file.exists() else 0
    return jobs / _drain_seconds(path), transactions


def floor(path: Path, jobs: int, durability: str) -> float:
    """The adapter's claim, start and complete statements in a bare blocking loop."""
    asyncio.run(_fill(path, jobs, durability))
    mode = Durability(durability)
    claim_sync = synchronous_for(mode, durable=False)
    finish_sync = synchronous_for(mode, durable=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        done = 0
        began = time.perf_counter()
        while True:
            conn.execute(f"PRAGMA synchronous = {claim_sync}")
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM, ("floor", 30.0, SERVICE, BATCH)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                break
            conn.execute(f"PRAGMA synchronous = {finish_sync}")
            conn.execute("BEGIN IMMEDIATE")
            for row in rows:
                conn.execute(START, (30.0, row[0], row[12])).fetchall()
                conn.execute(COMPLETE, ("null", 0.0, row[0], row[12]))
            conn.execute("COMMIT")
            done += len(rows)
        elapsed = time.perf_counter() - began
    finally:
        conn.close()
    if done != jobs:
        raise RuntimeError(f"the floor loop finished {done} of {jobs} jobs")
    return jobs / elapsed


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def run(
    jobs: int = 20_000,
    *,
    durability: str = "full",
    concurrency: int = 10,
    workdir: Path | None = None,
) -> DrainResult:
    """Measure end to end and floor on files under ``workdir`` (default: a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="usvc-bench-", dir=workdir) as tmp:
        e2e, transactions = end_to_end(Path(tmp) / "drain.db", jobs, durability, concurrency)
        bare = floor(Path(tmp) / "floor.db", jobs, durability)
    return DrainResult(
        jobs=jobs,
        durability=durability,
        concurrency=concurrency,
        end_to_end_jobs_per_second=e2e,
        floor_jobs_per_second=bare,
        ratio=e2e / bare,
        transactions=transactions,
        machine=_machine(),
    )


class NoopInput(BaseModel):
    n: int


@action("noop")
async def noop(input: NoopInput) -> None:
    """The benchmark's job: validates its input and does nothing."""
    return


def _serve() -> None:
    """The worker process: one no-op action, everything else from the environment."""
    app = Application()
    app.add_action(noop)
    try:
        app.run()
    finally:
        queue = app.queue
        if isinstance(queue, SqliteQueue) and (out := os.environ.get("BENCH_STATS_FILE")):
            commits, operations = queue.commits
            Path(out).write_text(json.dumps({"transactions": commits, "operations": operations}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to drain (20000)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, for a smoke run")
    parser.add_argument("--durability", choices=[d.value for d in Durability], default="full")
    parser.add_argument("--concurrency", type=int, default=10, help="MAX_CONCURRENT_JOBS (10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve()
        return 0
    jobs = 2_000 if args.quick else args.jobs
    result = run(jobs, durability=args.durability, concurrency=args.concurrency)
    if args.json:
        print(json.dumps({**asdict(result), "meets_target": result.meets_target}))
        return 0
    print(f"machine:     {result.machine}")
    print(
        f"drain:       {result.jobs} no-op jobs, MAX_CONCURRENT_JOBS={result.concurrency}, "
        f"durability={result.durability}"
    )
    print(f"end to end:  {result.end_to_end_jobs_per_second:8.0f} jobs/s")
    print(f"floor:       {result.floor_jobs_per_second:8.0f} jobs/s  (bare sqlite3 loop)")
    print(f"ratio:       {result.ratio:8.2f}")
    if result.transactions:
        print(
            f"commits:     {result.transactions} by the worker's queue "
            f"({result.jobs / result.transactions:.1f} jobs per commit)"
        )
    verdict = "meets" if result.meets_target else "misses"
    print(
        f"target:      >= {TARGET_JOBS_PER_SECOND:.0f} jobs/s and >= {TARGET_RATIO} of the floor "
        f"({verdict})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
