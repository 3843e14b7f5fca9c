"""Depth on usvc-postgres: one worker drains N no-op jobs from a queue holding D Ready jobs,
and the same N jobs from a shallow queue just before and just after (their mean is the
floor, so a machine whose load drifts moves both sides alike).

    uv run --frozen python bench/postgres_depth.py                  # 5,000 jobs, 500,000 deep
    uv run --frozen python bench/postgres_depth.py --jobs 500 --depth 5000 --json
    ... --url postgresql://user@host/db   # an existing server (default: start one)
    ... --explain                          # also print the claim's and the count's plans

What "deep" means here: a backlog. The deep table holds the N jobs, enqueued as in the
shallow table, and behind them ``D - N`` more due Ready jobs of the same service, action and
priority, enqueued later (copies of the N, ``run_at`` = ``created_at`` = the time of the
copy, so all of them are due). The worker claims the oldest first, as it would in a queue
that has fallen behind. A claim that did work in proportion to the Ready jobs (a sort, a
count, a filter applied after the index) would show here; the claim of the adapter seeks
the partial index of Ready jobs by ``(microservice, priority DESC, run_at, id)`` and reads
the first ten entries, so deep must keep pace with shallow (goal: >= 0.9). Ready jobs that
a claim reads and then rejects (a paused action's, or jobs of a higher priority that are
not due yet) are another case, not measured here.

Each table is prepared before its drain, outside the measured window: the N jobs through
``enqueue_many``, the copies by the server itself (one ``INSERT ... SELECT`` over
``generate_series``), then ``VACUUM (ANALYZE)`` and ``CHECKPOINT``: the settled state of
a table that grew over time (autovacuum sees to inserts since PostgreSQL 13), with no
checkpoint or vacuum of the fill left to compete with the drain.

The worker is a real service process (``Application``, ``QUEUE_URL`` on the server and the
table, ``MAX_CONCURRENT_JOBS=10``, default statistics sampling, JSON logs to /dev/null, no
HTTP), durable: the server runs with ``fsync`` and ``synchronous_commit`` on. While it
drains, this process counts only Completed jobs (on the partial index of finished jobs,
cheap at any depth); the worker is stopped once N are Completed. The rate is N over the
time from the first start to the N-th finish, read from the rows (the server's clock), so
neither process start-up nor shutdown is in the window.

``--json`` prints one line: ``shallow_jobs_per_second``, ``deep_jobs_per_second``, their
``ratio``, the worker's CPU per job on each side, and what one ``stats()`` call took on
each table (the worker samples it at start and every 15 s, with its default count limit
where the revision has one). Without PostgreSQL binaries
(and no ``--url``) it prints ``{"unavailable": why}`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import asyncpg
from noop_job import enqueue_noops, noop
from postgres_server import Postgres, postgres, unavailable
from usvc_core import Application

__all__ = ["depth_rates", "main"]

SERVICE = "bench-noop"
JOBS = 5_000
DEPTH = 500_000

#: Completed jobs of the service, on the partial index of finished jobs (the ``IN`` term
#: names that index's predicate): watching must not scan the Ready rows every poll.
_COMPLETED = "microservice = $1 AND status IN ('Completed', 'Failed') AND status = 'Completed'"


def _serve() -> None:
    """The worker process: one no-op action, everything else from the environment."""
    app = Application()
    app.add_action(noop)
    app.run()


def _table_url(url: str, table: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}table={table}"


async def _fill(url: str, table: str, jobs: int, depth: int) -> None:
    """``jobs`` jobs enqueued through the queue, then copies of them up to ``depth`` Ready
    jobs made by the server; the table vacuumed, analysed and checkpointed."""
    from usvc_postgres import PostgresQueue
    from usvc_postgres.settings import parse_postgres_url

    queue = PostgresQueue(**parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
    await queue.open()  # creates the table and its indexes as a worker would
    try:
        await enqueue_noops(queue, SERVICE, jobs)
    finally:
        await queue.close()
    conn = await asyncpg.connect(url)
    try:
        copies = depth - jobs
        if copies > 0:
            columns = [
                row[0]
                for row in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = $1 AND column_name <> 'id' ORDER BY ordinal_position",
                    table,
                )
            ]
            # Whatever the schema's revision: every column copied, the times made the
            # copy's own (later than the N jobs', all due).
            later = {"created_at": "now()", "run_at": "now()", "updated_at": "now()"}
            chosen = ", ".join(later.get(c, f"src.{c}") for c in columns)
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {chosen} FROM {table} src "
                "CROSS JOIN generate_series(1, $2::int) WHERE src.microservice = $1 "
                "ORDER BY src.id LIMIT $3",
                SERVICE,
                -(-copies // jobs),
                copies,
            )
        await conn.execute(f"VACUUM (ANALYZE) {table}")
        # A server given with --url, as a role without the right: settled without it.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _worker_count_limit() -> int | None:
    """The count limit of the worker's statistics sample in the revision under test (None:
    a revision whose worker counts exactly), so that the figure is the worker's sample."""
    from usvc_core.worker import WorkerConfig

    for f in dataclasses.fields(WorkerConfig):
        if f.name == "stats_count_limit":
            return cast(int | None, f.default)
    return None


async def _stats_cost(pg: Postgres, table: str) -> tuple[float, float | None]:
    """What the worker's sample of the queue's ``stats()`` on ``table`` costs (at start and
    every 15 s; with the worker's default count limit where the revision has one): the
    median wall time of one call, and the server's CPU time per call, both in ms (None for
    a server given with ``--url``)."""
    from usvc_postgres import PostgresQueue
    from usvc_postgres.settings import parse_postgres_url

    queue = PostgresQueue(**parse_postgres_url(pg.url), POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
    limit = _worker_count_limit()

    async def sample() -> None:
        await (queue.stats(SERVICE) if limit is None else queue.stats(SERVICE, count_limit=limit))

    await queue.open()
    try:
        await sample()  # plans made, pages cached: the worker's later samples
        times = []
        cpu = pg.cpu_seconds()
        for _ in range(5):
            began = time.perf_counter()
            await sample()
            times.append(time.perf_counter() - began)
        cpu_end = pg.cpu_seconds()
    finally:
        await queue.close()
    server = None if cpu is None or cpu_end is None else (cpu_end - cpu) / 5 * 1000
    return statistics.median(times) * 1000, server


async def _explain(url: str, table: str) -> str:
    """The claim's plan with its timings, in a transaction rolled back; then the plan of
    the worker's statistics count (bounded where the revision has it)."""
    from usvc_postgres.statements import Statements

    statements = Statements(table)
    sql = statements.claim(start=True)
    limit = _worker_count_limit()
    conn = await asyncpg.connect(url)
    try:
        claim = conn.transaction()
        await claim.start()
        try:
            rows = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {sql}", SERVICE, "explain", 30.0, 10
            )
        finally:
            await claim.rollback()
        if limit is None:
            counts = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statements.counts}", SERVICE)
        else:
            counts = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {statements.counts_upto}", SERVICE, limit
            )
        return "\n".join(
            [
                *(row[0] for row in rows),
                f"--- the worker's statistics count (count_limit={limit})",
                *(row[0] for row in counts),
            ]
        )
    finally:
        await conn.close()


async def _completed(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {_COMPLETED}", SERVICE))


async def _rate(conn: asyncpg.Connection, table: str, jobs: int) -> float:
    """The first ``jobs`` Completed jobs over the time from the first start to the
    ``jobs``-th finish (jobs finished while the worker stopped are not counted)."""
    first = await conn.fetchval(f"SELECT min(started_at) FROM {table} WHERE {_COMPLETED}", SERVICE)
    last = await conn.fetchval(
        f"SELECT finished_at FROM {table} WHERE {_COMPLETED} "
        "ORDER BY finished_at OFFSET $2 LIMIT 1",
        SERVICE,
        jobs - 1,
    )
    return jobs / (last - first).total_seconds()


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) a process has used so far; None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drain(
    pg: Postgres, table: str, jobs: int, concurrency: int, workdir: Path
) -> dict[str, Any]:
    """One worker process drains ``table`` until ``jobs`` jobs are Completed: jobs/s, the
    worker's CPU µs per job (from its first finish seen to the last), and the server's
    (from the worker's start: its start-up sample of ``stats()`` included)."""
    env = {
        **os.environ,
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": _table_url(pg.url, table),
        "MAX_CONCURRENT_JOBS": str(concurrency),
        "POLLING_INTERVAL_SECONDS": "0.5",
        "HTTP_ENABLED": "False",
        "LOG_CONSOLE_JSON": "True",
        "DEV_MODE": "False",
    }
    errors = workdir / f"{table}.stderr"
    conn = await asyncpg.connect(pg.url)
    try:
        server_cpu = pg.cpu_seconds()
        with errors.open("wb") as err:
            worker = subprocess.Popen(  # noqa: ASYNC220 (started before the clock runs)
                [sys.executable, __file__, "--serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        first: tuple[float | None, int] | None = None
        try:
            deadline = time.monotonic() + max(120.0, jobs / 20)
            while (done := await _completed(conn, table)) < jobs:
                if first is None and done > 0:
                    first = (_cpu_seconds(worker.pid), done)
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited early: {errors.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{table}: {done} of {jobs} jobs Completed in time")
                await asyncio.sleep(0.02 if first is None else 0.1)
            worker_cpu, server_cpu_end = _cpu_seconds(worker.pid), pg.cpu_seconds()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, 60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        out: dict[str, Any] = {
            "jobs_per_second": await _rate(conn, table, jobs),
            "cpu_us_per_job": None,
            "server_cpu_us_per_job": None,
        }
        # Per job finished in the window (the last poll may have seen a few past ``jobs``).
        if first is not None and first[0] is not None and worker_cpu is not None:
            out["cpu_us_per_job"] = (worker_cpu - first[0]) / max(done - first[1], 1) * 1e6
        if server_cpu is not None and server_cpu_end is not None:
            out["server_cpu_us_per_job"] = (server_cpu_end - server_cpu) / done * 1e6
        return out
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        await conn.close()


async def depth_rates(
    pg: Postgres, jobs: int, depth: int, concurrency: int = 10, explain: bool = False
) -> dict[str, Any]:
    """Shallow, deep, shallow again on ``url``: jobs/s of each, and what they cost."""
    depth = max(depth, jobs + 1)
    out: dict[str, Any] = {"jobs": jobs, "depth": depth, "concurrency": concurrency}
    runs: dict[str, list[dict[str, Any]]] = {"shallow": [], "deep": []}
    with tempfile.TemporaryDirectory(prefix="usvc-bench-pgdepth-") as tmp:
        for n, side in enumerate(("shallow", "deep", "shallow")):
            table = f"depth_{side}_{n}"
            await _fill(pg.url, table, jobs, depth if side == "deep" else jobs)
            stats_ms, stats_cpu_ms = await _stats_cost(pg, table)
            out[f"{side}_stats_ms"], out[f"{side}_stats_server_cpu_ms"] = stats_ms, stats_cpu_ms
            if explain:
                plan = await _explain(pg.url, table)
                print(f"--- the claim on {table}\n{plan}", file=sys.stderr)
            runs[side].append(await _drain(pg, table, jobs, concurrency, Path(tmp)))
    for side, done in runs.items():
        out[f"{side}_jobs_per_second"] = statistics.mean(r["jobs_per_second"] for r in done)
        for key in ("cpu_us_per_job", "server_cpu_us_per_job"):
            cpu = [r[key] for r in done if r[key] is not None]
            out[f"{side}_{key}"] = statistics.mean(cpu) if cpu else None
    out["ratio"] = out["deep_jobs_per_second"] / out["shallow_jobs_per_second"]
    out["load_average"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start a temporary one)")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs to drain ({JOBS:,})")
    parser.add_argument("--depth", type=int, default=DEPTH, help=f"Ready jobs deep ({DEPTH:,})")
    parser.add_argument("--concurrency", type=int, default=10, help="MAX_CONCURRENT_JOBS (10)")
    parser.add_argument(
        "--explain", action="store_true", help="print the claim's and the count's plans"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve()
        return 0
    why = unavailable(args.url)
    if why:
        print(json.dumps({"unavailable": why}) if args.json else f"unavailable: {why}")
        return 0
    with postgres(args.url) as pg:
        result = asyncio.run(
            depth_rates(pg, args.jobs, args.depth, args.concurrency, explain=args.explain)
        )
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"drain of {result['jobs']:,} jobs, MAX_CONCURRENT_JOBS={result['concurrency']}, "
        f"load average {result['load_average']:.1f}"
    )
    for side in ("shallow", "deep"):
        cpu = result[f"{side}_cpu_us_per_job"]
        server = result[f"{side}_server_cpu_us_per_job"]
        stats_cpu = result[f"{side}_stats_server_cpu_ms"]
        print(
            f"{side:8} {result[f'{side}_jobs_per_second']:8.0f} jobs/s"
            + (f"  worker CPU {cpu:.0f} us/job" if cpu is not None else "")
            + (f"  server CPU {server:.0f} us/job" if server is not None else "")
            + f"  stats() {result[f'{side}_stats_ms']:.1f} ms"
            + (f" ({stats_cpu:.0f} ms server CPU)" if stats_cpu is not None else "")
            + (f"  ({result['depth']:,} Ready)" if side == "deep" else "")
        )
    print(f"ratio    {result['ratio']:8.2f}  (goal >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
