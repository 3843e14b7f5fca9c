"""Benchmark (not a test): what operators read from an SQLite queue of 1,000,000 jobs, and
how long a purge of a large part of it stalls the claims of a worker meanwhile.

    uv run python bench/admin_queries.py                    # 1,000,000 jobs
    uv run python bench/admin_queries.py --jobs 100000      # a smaller file
    uv run python bench/admin_queries.py --db /tmp/a.db     # keep (and reuse) the file
    uv run python bench/admin_queries.py --no-purge         # the reads only

The file is built fast: one ``INSERT ... SELECT`` from a recursive CTE with the indexes
dropped, then the indexes made again (a sort each, not a million b-tree inserts). Its jobs
look like a service's week: 12 actions of unequal size; 93.5 % Completed, 5 % Failed
(HANDLER_ERROR and TIMEOUT, and 10 jobs with a rare code), 1 % Ready and due, 0.3 %
scheduled for later, a few hundred Assigned and Processing; idempotency keys on a tenth,
unique keys on a hundredth, an attempt history on the failed ones.

Every query runs through ``SqliteQueue`` (its thread, its connection, as the admin API
and the CLI call it), ``--repeat`` times; p50 and p99 in milliseconds are printed beside
the 100 ms target. Then ``purge`` deletes every finished job older than a cutoff while
another handle on the file (another connection, as another worker process would have)
claims, starts and completes jobs one at a time; the longest claim is the stall.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from usvc_core.adapter_support import encode_cursor
from usvc_core.jobs import JobStatus
from usvc_core.ports import EnqueueRequest, JobFilter
from usvc_sqlite import Durability, SqliteQueue
from usvc_sqlite.schema import TABLE, prepare

__all__ = ["build", "main", "measure_purge", "measure_reads"]

SERVICE = "bench-admin"
JOBS = 1_000_000
TARGET_MS = 100.0
DAY = 86400.0

# One row per n in 1..N; r = (n * 7919) % 1000 picks its kind (a spread, not a run).
_FILL = f"""
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :jobs),
rows AS (
    SELECT n, (n * 7919) % 1000 AS r, :start + n * :step AS created FROM seq
)
INSERT INTO {TABLE} (id, microservice, action, payload, status, priority, run_at, attempts,
    max_attempts, token, idempotency_key, unique_key, lease_owner, lease_token,
    lease_expires_at, results, error_code, error_message, runtime_ms, created_at,
    updated_at, started_at, finished_at, attempt_no, attempt_log)
SELECT n, :service,
    printf('act%02d', CASE WHEN r < 400 THEN 0 WHEN r < 600 THEN 1 WHEN r < 700 THEN 2
        ELSE 3 + r % 9 END),
    printf('{{"action":"act","n":%d}}', n),
    CASE WHEN r < 935 THEN 'Completed' WHEN r < 985 THEN 'Failed'
        WHEN r < 995 THEN 'Ready' WHEN r < 998 THEN 'Ready'
        WHEN r < 999 THEN 'Assigned' ELSE 'Processing' END,
    n % 3,
    CASE WHEN r >= 995 AND r < 998 THEN :now + 60 + n % 3600 ELSE created END,
    CASE WHEN r < 995 THEN 1 ELSE 0 END, 3, NULL,
    CASE WHEN n % 10 = 0 THEN printf('order-%d', n) END,
    CASE WHEN n % 100 = 0 THEN printf('schedule:act:%d', n) END,
    CASE WHEN r >= 998 THEN 'worker-1' END,
    CASE WHEN r >= 998 THEN printf('%032x', n) END,
    CASE WHEN r >= 998 THEN :now + 30 END,
    CASE WHEN r < 935 THEN '{{"ok":true}}' END,
    CASE WHEN r >= 935 AND r < 985 THEN
        CASE WHEN n % :rare = 7 THEN 'RESULT_NOT_SERIALIZABLE'
             WHEN r % 5 = 0 THEN 'TIMEOUT' ELSE 'HANDLER_ERROR' END END,
    CASE WHEN r >= 935 AND r < 985 THEN
        CASE WHEN r % 5 = 0 THEN printf('handler ran past its timeout of %d s', 30 + n % 7)
             ELSE printf('ValueError: upstream %d answered 503 (connection refused)', n % 97)
        END END,
    CASE WHEN r < 985 THEN 5.0 + n % 50 END,
    created, created + 1.0,
    CASE WHEN r < 985 OR r >= 999 THEN created + 0.5 END,
    CASE WHEN r < 985 THEN created + 1.0 END,
    CASE WHEN r < 995 OR r >= 999 THEN 1 ELSE 0 END,
    CASE WHEN r >= 935 AND r < 985 THEN
        '[[0,"worker-0",' || (created + 0.1) || ',' || (created + 0.2)
        || ',"retried","HANDLER_ERROR","a first failure"]]' END
FROM rows
"""


def build(path: Path, jobs: int) -> None:
    """A file at the current schema holding ``jobs`` jobs of one service (see the module)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        prepare(conn, str(path))
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (TABLE,),
        ).fetchall()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        now = time.time()
        week = 7 * DAY
        conn.execute(
            _FILL,
            {
                "jobs": jobs,
                "service": SERVICE,
                "start": now - week,
                "step": week / jobs,
                "now": now,
                "rare": jobs // 200 + 1,
            },
        )
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float, Any]:
    samples: list[float] = []
    result: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), _percentile(samples, 0.99), result


async def measure_reads(
    path: Path, repeat: int, jobs: int = JOBS
) -> list[tuple[str, float, float, str]]:
    """(query, p50 ms, p99 ms, what it found) for each operator read."""
    queue = SqliteQueue(path)
    await queue.open()
    try:
        first = await queue.list_jobs(JobFilter(SERVICE), limit=50)
        assert first.next_cursor is not None
        second = await queue.list_jobs(JobFilter(SERVICE), limit=50, cursor=first.next_cursor)
        third_cursor = second.next_cursor
        middle = await queue.get(str(jobs // 2))
        assert middle is not None
        assert middle.created_at is not None
        mid = middle.created_at
        deep_cursor = _cursor_before(mid)
        s = SERVICE
        idempotency_key = f"order-{jobs // 20 * 10}"  # every tenth job has one
        unique_key = f"schedule:act:{jobs // 300 * 100}"  # every hundredth
        failed = frozenset({JobStatus.FAILED})
        ready = frozenset({JobStatus.READY})
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("list: newest page", lambda: queue.list_jobs(JobFilter(s), limit=50)),
            ("list: page 3", lambda: queue.list_jobs(JobFilter(s), limit=50, cursor=third_cursor)),
            (
                "list: a page in the middle",
                lambda: queue.list_jobs(JobFilter(s), limit=50, cursor=deep_cursor),
            ),
            ("list: Failed", lambda: queue.list_jobs(JobFilter(s, statuses=failed), limit=50)),
            (
                "list: Processing",
                lambda: queue.list_jobs(
                    JobFilter(s, statuses=frozenset({JobStatus.PROCESSING})), limit=50
                ),
            ),
            (
                "list: Ready and due",
                lambda: queue.list_jobs(JobFilter(s, statuses=ready, scheduled=False), limit=50),
            ),
            ("list: scheduled", lambda: queue.list_jobs(JobFilter(s, scheduled=True), limit=50)),
            (
                "list: Completed + Failed",
                lambda: queue.list_jobs(
                    JobFilter(s, statuses=frozenset({JobStatus.COMPLETED, JobStatus.FAILED})),
                    limit=50,
                ),
            ),
            (
                "list: one action",
                lambda: queue.list_jobs(JobFilter(s, actions=frozenset({"act07"})), limit=50),
            ),
            (
                "list: an absent action",
                lambda: queue.list_jobs(JobFilter(s, actions=frozenset({"nothing"})), limit=50),
            ),
            (
                "list: error HANDLER_ERROR",
                lambda: queue.list_jobs(
                    JobFilter(s, error_codes=frozenset({"HANDLER_ERROR"})), limit=50
                ),
            ),
            (
                "list: a rare error code",
                lambda: queue.list_jobs(
                    JobFilter(s, error_codes=frozenset({"RESULT_NOT_SERIALIZABLE"})), limit=50
                ),
            ),
            (
                "list: an absent error code",
                lambda: queue.list_jobs(JobFilter(s, error_codes=frozenset({"NOPE"})), limit=50),
            ),
            (
                "list: text 'refused'",
                lambda: queue.list_jobs(JobFilter(s, error_text="refused"), limit=50),
            ),
            (
                "list: text 'timeout of 33 s'",
                lambda: queue.list_jobs(JobFilter(s, error_text="timeout of 33 s"), limit=50),
            ),
            (
                "list: text found nowhere",
                lambda: queue.list_jobs(JobFilter(s, error_text="no such words"), limit=50),
            ),
            (
                "list: one hour, mid-week",
                lambda: queue.list_jobs(
                    JobFilter(s, created_after=mid, created_before=mid + timedelta(hours=1)),
                    limit=50,
                ),
            ),
            (
                "list: Failed, one action, one day",
                lambda: queue.list_jobs(
                    JobFilter(
                        s,
                        statuses=failed,
                        actions=frozenset({"act05"}),
                        created_after=mid,
                        created_before=mid + timedelta(days=1),
                    ),
                    limit=50,
                ),
            ),
            ("find: by id", lambda: queue.find_jobs(s, str(jobs // 3))),
            ("find: by idempotency key", lambda: queue.find_jobs(s, idempotency_key)),
            ("find: by unique key", lambda: queue.find_jobs(s, unique_key)),
            ("get: a job with its attempts", lambda: queue.get(str(jobs // 2))),
            ("stats", lambda: queue.stats(s)),
            ("overview (activity, 60 min)", lambda: queue.activity(s)),
            ("session_revoked", lambda: queue.session_revoked("some-session")),
        ]
        figures: list[tuple[str, float, float, str]] = []
        for name, fn in cases:
            p50, p99, result = await _timed(fn, repeat)
            figures.append((name, p50, p99, _found(result)))
        return figures
    finally:
        await queue.close()


def _cursor_before(moment: datetime) -> str:
    return encode_cursor(moment.timestamp(), 1 << 62)


def _found(result: Any) -> str:
    jobs = getattr(result, "jobs", None)
    if jobs is not None:
        return f"{len(jobs)} jobs"
    if isinstance(result, list):
        return f"{len(result)} jobs"
    if hasattr(result, "counts"):
        return "counts"
    return type(result).__name__


async def measure_purge(path: Path, older_than: float) -> tuple[int, float, float, int, float]:
    """Purge the finished jobs older than ``older_than`` seconds while another handle
    claims, starts and completes one job at a time: (rows purged, seconds, longest claim
    in ms, claims made, median claim in ms)."""
    purger = SqliteQueue(path, durability=Durability.NORMAL)
    worker = SqliteQueue(path, durability=Durability.NORMAL)
    await purger.open()
    await worker.open()
    service = f"{SERVICE}-claims"
    await worker.enqueue_many(
        [EnqueueRequest({"action": "noop"}, microservice=service) for _ in range(20_000)]
    )
    claims: list[float] = []
    done = asyncio.Event()

    async def claim_loop() -> None:
        while not done.is_set():
            started = time.perf_counter()
            jobs = await worker.claim_and_start(service, "w", 1, 30.0)
            claims.append((time.perf_counter() - started) * 1000)
            for job in jobs:
                await worker.complete(job, None, 1.0)
            await asyncio.sleep(0.001)

    loop_task = asyncio.create_task(claim_loop())
    await asyncio.sleep(0.2)
    before = len(claims)
    started = time.perf_counter()
    purged = await purger.purge(SERVICE, older_than)
    seconds = time.perf_counter() - started
    done.set()
    await loop_task
    during = claims[before:]
    await purger.close()
    await worker.close()
    return purged, seconds, max(during), len(during), statistics.median(during)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--db", type=Path, help="file to build (or reuse when it exists)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-purge", action="store_true")
    parser.add_argument(
        "--purge-days", type=float, default=0.0, help="purge finished jobs older than this"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usvc-admin-bench-") as scratch:
        path = args.db or Path(scratch) / "admin.db"
        if not path.exists():
            started = time.perf_counter()
            build(path, args.jobs)
            print(f"built {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s: {path}")
        print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
        figures = asyncio.run(measure_reads(path, args.repeat, args.jobs))
        width = max(len(name) for name, *_ in figures)
        print(f"{'query':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  found")
        for name, p50, p99, found in figures:
            flag = "" if p99 < TARGET_MS else f"  (over {TARGET_MS:.0f} ms)"
            print(f"{name:<{width}}  {p50:8.2f}  {p99:8.2f}  {found}{flag}")
        if not args.no_purge:
            purged, seconds, longest, count, median = asyncio.run(
                measure_purge(path, args.purge_days * DAY)
            )
            print(
                f"purge: {purged:,} rows in {seconds:.1f} s; meanwhile {count} claims, "
                f"median {median:.2f} ms, longest {longest:.1f} ms (the stall)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
