"""What one queue statistics sample costs at depth, exact and bounded: ``stats()`` and
``stats(count_limit=N)`` on a PostgreSQL table and a SQLite file holding D Ready jobs.

    uv run --frozen python bench/stats_cost.py                 # 500,000 deep, limit 10,000
    uv run --frozen python bench/stats_cost.py --depth 100000 --limit 1000

The tables are filled as ``postgres_depth`` and ``sqlite_depth`` fill theirs. Each variant
is called once to warm up (plans, cache), then 5 times: the median wall time and, for
PostgreSQL, the server's CPU time (``/proc``, 10 ms ticks), for SQLite the CPU time of the
calling thread (``statements.stats`` called directly). Exact and bounded alternate twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import postgres_depth
import sqlite_drain
from postgres_server import postgres, unavailable
from usvc_core.jobs import JobStatus

__all__ = ["main"]


def _line(store: str, limit: int | None, ms: float, cpu_ms: float | None, ready: int) -> str:
    cpu = "" if cpu_ms is None else f", CPU {cpu_ms:.1f} ms"
    return f"{store:8} count_limit={limit!s:>6}: {ms:7.2f} ms{cpu}  (Ready counted: {ready:,})"


async def _postgres(depth: int, limit: int) -> None:
    from usvc_postgres import PostgresQueue
    from usvc_postgres.settings import parse_postgres_url

    with postgres(None) as pg:
        await postgres_depth._fill(pg.url, "deep", min(5_000, depth), depth)
        queue = PostgresQueue(
            **parse_postgres_url(pg.url), POSTGRES_TABLE="deep", POSTGRES_LISTEN="off"
        )
        await queue.open()
        try:
            for count_limit in (None, limit, None, limit):
                await queue.stats(postgres_depth.SERVICE, count_limit=count_limit)
                walls, cpus = [], []
                for _ in range(5):
                    cpu, began = pg.cpu_seconds(), time.perf_counter()
                    stats = await queue.stats(postgres_depth.SERVICE, count_limit=count_limit)
                    walls.append(time.perf_counter() - began)
                    cpu_end = pg.cpu_seconds()
                    if cpu is not None and cpu_end is not None:
                        cpus.append(cpu_end - cpu)
                server = statistics.median(cpus) * 1e3 if cpus else None
                ready = stats.counts[JobStatus.READY]
                print(_line("postgres", count_limit, statistics.median(walls) * 1e3, server, ready))
        finally:
            await queue.close()


def _sqlite(depth: int, limit: int) -> None:
    from usvc_sqlite import statements

    with tempfile.TemporaryDirectory(prefix="usvc-bench-stats-") as tmp:
        path = Path(tmp) / "deep.db"
        asyncio.run(sqlite_drain._fill(path, min(5_000, depth), "full"))
        sqlite_drain._deepen(path, depth)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            for count_limit in (None, limit, None, limit):
                statements.stats(conn, sqlite_drain.SERVICE, count_limit)
                walls, cpus = [], []
                for _ in range(5):
                    cpu, began = time.thread_time(), time.perf_counter()
                    stats = statements.stats(conn, sqlite_drain.SERVICE, count_limit)
                    walls.append(time.perf_counter() - began)
                    cpus.append(time.thread_time() - cpu)
                ready = stats.counts[JobStatus.READY]
                wall, cpu_ms = statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3
                print(_line("sqlite", count_limit, wall, cpu_ms, ready))
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=500_000, help="Ready jobs (500,000)")
    parser.add_argument("--limit", type=int, default=10_000, help="count_limit (10,000)")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}, {args.depth:,} Ready jobs")
    why = unavailable(None)
    if why:
        print(f"postgres unavailable: {why}")
    else:
        asyncio.run(_postgres(args.depth, args.limit))
    _sqlite(args.depth, args.limit)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
