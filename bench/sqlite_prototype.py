"""The SQLite drain's floor: a hand-written prototype of the design the SQLite queue and the
worker implement together, with none of the kit around it.

- one ``sqlite3`` connection owned by one helper thread; every transaction is one hop to it
  (``run_in_executor`` on a one-thread pool), committed to the WAL without a flush;
- a claim takes up to the free slots in one transaction (the adapter's own claim-and-start
  statement: Ready -> Processing with a fencing token, the attempt counted);
- each job validates its payload with a pydantic model and awaits a no-op handler, ten at a
  time;
- completions are committed in groups: whatever finished while the previous transaction ran
  goes into the next one (one ``executemany``, and from schema 8 one upsert of the finished
  counts, as the adapter keeps them), together with the claim for the slots that freed; in
  durable mode a second thread flushes the WAL (``fdatasync``, what ``synchronous=FULL``
  does at commit), one flush covering every commit made before it began, and a job counts
  as done only once a flush after its commit returned. Jobs claimed meanwhile run meanwhile.

What it leaves out is what the kit adds: leases renewed, metrics, logs, health, timeouts,
retries, the ports. ``python bench/sqlite_prototype.py FILE --jobs N`` drains a file filled
by ``bench/sqlite_drain.py`` and prints its jobs/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlite_modules import sqlite_package, sqlite_statements

__all__ = ["drain_prototype"]

_PAYLOAD, _TOKEN = 3, 12  # columns of a claimed row (the adapter's column order)


class _Input(BaseModel):
    n: int


async def _handler(input: _Input) -> None:
    return None


async def drain_prototype(
    path: Path, service: str, jobs: int, durability: str, concurrency: int = 10
) -> int:
    """Drain ``jobs`` Ready jobs of ``service`` from ``path``; returns how many it
    completed (the rate is read from the rows, as for the kit)."""
    statements = sqlite_statements()
    claim_sql: str = statements.CLAIM_STARTED
    complete_sql: str = statements.COMPLETE
    # The finished-job counts the design keeps, one statement per group (schema 8; before,
    # a trigger inside COMPLETE kept them).
    count_sql: str | None = getattr(statements, "COUNT_FINISHED", None)
    mode = sqlite_package().Durability(durability)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="prototype-sqlite")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")

    def transaction(done: Sequence[tuple[str, float, int, str]], limit: int) -> list[Any]:
        """One hop: the finished jobs' completions, then a claim for the free slots, in one
        transaction committed to the WAL (``synchronous=NORMAL``: no flush yet)."""
        conn.execute("BEGIN IMMEDIATE")
        if done:
            conn.executemany(complete_sql, done)
            if count_sql is not None:
                ids = ", ".join("?" * len(done))
                conn.execute(count_sql.replace("<ids>", ids), ("Completed", *(d[2] for d in done)))
        rows = (
            conn.execute(claim_sql, ("prototype", 30.0, service, limit)).fetchall() if limit else []
        )
        conn.execute("COMMIT")
        return rows

    conn.execute("PRAGMA synchronous = NORMAL")
    durable = mode.value == "full"
    flush_pool = ThreadPoolExecutor(1, thread_name_prefix="prototype-flush")
    wal: int | None = None
    pending: list[tuple[str, float, int, str]] = []
    waiting: list[asyncio.Future[None]] = []
    unflushed: list[asyncio.Future[None]] = []  # committed to the WAL, not yet flushed
    wake, flush_due = asyncio.Event(), asyncio.Event()
    running = completed = 0
    stopping = False

    async def flusher() -> None:
        # Group commit: one fdatasync of the WAL covers every commit made before it began.
        nonlocal wal
        while True:
            await flush_due.wait()
            flush_due.clear()
            covered = unflushed[:]
            unflushed.clear()
            if covered:
                if wal is None:
                    wal = os.open(f"{path}-wal", os.O_RDONLY)
                await loop.run_in_executor(flush_pool, os.fdatasync, wal)
                for fut in covered:
                    fut.set_result(None)
            elif stopping:
                return

    async def run(row: Any) -> None:
        nonlocal running
        data = json.loads(row[_PAYLOAD])
        data.pop("action", None)
        await _handler(_Input.model_validate(data))
        running -= 1
        done = loop.create_future()
        pending.append(("null", 0.0, row[0], row[_TOKEN]))
        waiting.append(done)
        wake.set()
        await done  # durable once a flush after its commit returned

    flushing = asyncio.create_task(flusher())
    tasks: set[asyncio.Task[None]] = set()
    exhausted = False
    try:
        while True:
            limit = 0 if exhausted else concurrency - running
            if not pending and limit <= 0:
                if not running:
                    break
                wake.clear()
                await wake.wait()
                continue
            batch, futures = pending[:], waiting[:]
            pending.clear()
            waiting.clear()
            rows = await loop.run_in_executor(pool, transaction, batch, limit)
            completed += len(batch)
            if durable:
                unflushed.extend(futures)
                flush_due.set()
            else:
                for fut in futures:
                    fut.set_result(None)
            if limit and len(rows) < limit:
                exhausted = True
            running += len(rows)
            for row in rows:
                task = asyncio.Task(run(row), loop=loop, eager_start=True)
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        stopping = True
        flush_due.set()
        await flushing
        pool.shutdown()
        flush_pool.shutdown()
        if wal is not None:
            os.close(wal)
        conn.close()
    return completed


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--service", default="bench-noop")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--durability", default="full")
    args = parser.parse_args()
    done = asyncio.run(drain_prototype(args.file, args.service, args.jobs, args.durability))
    print(json.dumps({"completed": done}))


if __name__ == "__main__":
    main()
