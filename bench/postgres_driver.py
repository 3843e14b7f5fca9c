"""Which PostgreSQL driver for usvc-postgres: psycopg 3 (+ psycopg_pool) or asyncpg, measured
on the round trips a worker makes: claim a batch (``FOR UPDATE SKIP LOCKED``) and complete
each job, every statement its own durable transaction (``synchronous_commit = on``).

    bash scripts/dev.sh uv run --frozen --group bench python bench/postgres_driver.py
    ... --url postgresql://user@host:5432/db   # an existing server (default: start one)

Cases, each on a fresh table of ``--jobs`` Ready jobs:

- ``serial``: one connection; claim 1 job, complete it; one at a time (latency floor).
- ``batch``: a pool of 4 connections; claim 10, complete the 10 concurrently, 2 claimers.

Each driver runs with its statement cache on (direct connection) and off (what PgBouncer
in transaction pooling needs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "usvc-postgres" / "tests"))

TABLE = "bench_driver_jobs"
SETUP = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'Ready', priority int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL,
    lease_owner text, lease_token uuid, lease_expires_at timestamptz, results jsonb,
    finished_at timestamptz);
CREATE INDEX {TABLE}_ready ON {TABLE} (priority DESC, run_at, id) WHERE status = 'Ready';
"""
FILL = f"""INSERT INTO {TABLE} (payload)
SELECT jsonb_build_object('action', 'echo', 'n', g) FROM generate_series(1, %s) g"""
CLAIM = f"""
WITH picked AS (
    SELECT id FROM {TABLE} WHERE status = 'Ready' AND run_at <= now()
    ORDER BY priority DESC, run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE {TABLE} j SET status = 'Processing', lease_owner = $2, lease_token = gen_random_uuid(),
    lease_expires_at = now() + interval '30 seconds'
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.payload, j.lease_token"""
COMPLETE = f"""
UPDATE {TABLE} SET status = 'Completed', results = $1, finished_at = now(), lease_expires_at = NULL
WHERE id = $2 AND lease_token = $3 AND status = 'Processing'"""


def _pg(sql: str) -> str:
    """asyncpg's $n placeholders as psycopg's %s (they appear in order here)."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "%s")
    return sql


class Driver:
    name: str

    async def setup(self, url: str, jobs: int) -> None: ...
    async def claim(self, limit: int) -> list[tuple[Any, Any]]: ...
    async def complete(self, job_id: Any, token: Any) -> None: ...
    async def close(self) -> None: ...


class Asyncpg(Driver):
    def __init__(self, cache: bool) -> None:
        self.name = f"asyncpg {'cache' if cache else 'no cache'}"
        self.cache = 100 if cache else 0

    async def setup(self, url: str, jobs: int) -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute(SETUP)
        await conn.execute(FILL.replace("%s", "$1"), jobs)
        await conn.close()
        self.pool = await asyncpg.create_pool(
            url, min_size=4, max_size=4, statement_cache_size=self.cache
        )

    async def claim(self, limit: int) -> list[tuple[Any, Any]]:
        rows = await self.pool.fetch(CLAIM, limit, "bench")
        return [(r[0], r[2]) for r in rows]

    async def complete(self, job_id: Any, token: Any) -> None:
        await self.pool.execute(COMPLETE, '{"ok": true}', job_id, token)

    async def close(self) -> None:
        await self.pool.close()


class Psycopg(Driver):
    def __init__(self, prepare: bool) -> None:
        self.name = f"psycopg {'prepared' if prepare else 'not prepared'}"
        self.prepare = 5 if prepare else None

    async def setup(self, url: str, jobs: int) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(SETUP)
            await conn.execute(FILL, (jobs,))

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            conn.prepare_threshold = self.prepare
            await conn.set_autocommit(True)

        self.pool = AsyncConnectionPool(
            url, min_size=4, max_size=4, configure=configure, open=False
        )
        await self.pool.open(wait=True)
        self.claim_sql = _pg(CLAIM)
        self.complete_sql = _pg(COMPLETE)

    async def claim(self, limit: int) -> list[tuple[Any, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.claim_sql, (limit, "bench"))
            rows = await cur.fetchall()
        return [(r[0], r[2]) for r in rows]

    async def complete(self, job_id: Any, token: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(self.complete_sql, ('{"ok": true}', job_id, token))

    async def close(self) -> None:
        await self.pool.close()


async def serial(driver: Driver, jobs: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    done = 0
    while done < jobs:
        t0 = time.perf_counter()
        claimed = await driver.claim(1)
        if not claimed:
            break
        await driver.complete(*claimed[0])
        latencies.append(time.perf_counter() - t0)
        done += 1
    return done / (time.perf_counter() - start), latencies


async def batch(driver: Driver, jobs: int) -> tuple[float, list[float]]:
    done = 0

    async def claimer() -> None:
        nonlocal done
        while True:
            claimed = await driver.claim(10)
            if not claimed:
                return
            await asyncio.gather(*(driver.complete(*c) for c in claimed))
            done += len(claimed)

    start = time.perf_counter()
    await asyncio.gather(claimer(), claimer())
    return done / (time.perf_counter() - start), []


async def run_case(
    make: Callable[[], Driver],
    case: Callable[[Driver, int], Awaitable[tuple[float, list[float]]]],
    url: str,
    jobs: int,
) -> tuple[str, float, float | None]:
    driver = make()
    await driver.setup(url, jobs)
    try:
        rate, latencies = await case(driver, jobs)
    finally:
        await driver.close()
    p50 = statistics.median(latencies) * 1000 if latencies else None
    return driver.name, rate, p50


async def main_async(url: str, jobs: int, rounds: int) -> None:
    makers: list[Callable[[], Driver]] = [
        lambda: Asyncpg(True),
        lambda: Asyncpg(False),
        lambda: Psycopg(True),
        lambda: Psycopg(False),
    ]
    for case in (serial, batch):
        print(f"== {case.__name__} ({jobs} jobs, best of {rounds})")
        for make in makers:
            best: tuple[str, float, float | None] | None = None
            for _ in range(rounds):
                result = await run_case(make, case, url, jobs)
                if best is None or result[1] > best[1]:
                    best = result
            assert best is not None
            name, rate, p50 = best
            extra = f"  claim+complete p50 {p50:.2f} ms" if p50 is not None else ""
            print(f"  {name:<22} {rate:8.0f} jobs/s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start a temporary one)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.url:
        asyncio.run(main_async(args.url, args.jobs, args.rounds))
        return
    from pgserver import PgServer

    server = PgServer()
    try:
        server.init()
        server.start()
        asyncio.run(main_async(server.url, args.jobs, args.rounds))
    finally:
        server.remove()


if __name__ == "__main__":
    main()
