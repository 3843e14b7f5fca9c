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
the statements the worker's queue runs, in a bare blocking ``sqlite3`` loop, ten jobs at a
time: the claim-and-start statement (``CLAIM_STARTED``) in one transaction, then the
complete statements of those ten (and the count of finished jobs, schema 8) in a second
one. Each transaction uses the ``PRAGMA synchronous`` level the adapter uses for it. The
ratio is end-to-end over floor.

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
from typing import Any

from harness import cpu_model
from noop_job import enqueue_noops, noop
from sqlite_modules import sqlite_connection, sqlite_package, sqlite_statements
from usvc_core import Application

SqliteQueue = sqlite_package().SqliteQueue
Durability = sqlite_package().Durability
synchronous_for = sqlite_connection().synchronous_for
CLAIM_STARTED: str = sqlite_statements().CLAIM_STARTED
COMPLETE: str = sqlite_statements().COMPLETE
#: The count of finished jobs a batch of completions keeps (schema 8 on; before, a trigger
#: kept it row by row inside COMPLETE).
COUNT_FINISHED: str | None = getattr(sqlite_statements(), "COUNT_FINISHED", None)

__all__ = ["JOBS", "QUICK_JOBS", "DrainResult", "depth_rates", "main", "prototype", "run"]

SERVICE = "bench-noop"
JOBS = 20_000
QUICK_JOBS = 2_000
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
    #: the hand-written prototype of the same design (bench/sqlite_prototype.py), same file size
    prototype_jobs_per_second: float
    prototype_ratio: float
    prototype_cpu_us_per_job: float  #: all its threads (the loop, SQLite's, the flusher's)
    transactions: int  #: commits the worker's queue made (group commit shares them)
    #: the worker process's CPU time per job, in its event-loop thread and its other threads
    end_to_end_cpu_us_per_job: tuple[float, ...] | None
    floor_cpu_us_per_job: float
    machine: str
    fsync_ms: float  #: one synchronous=FULL commit on this disk, measured in the same run
    load_average: float  #: 1-minute load average when the run ended (other work on the box)

    @property
    def meets_target(self) -> bool:
        return (
            self.end_to_end_jobs_per_second >= TARGET_JOBS_PER_SECOND and self.ratio >= TARGET_RATIO
        )


async def _fill(path: Path, jobs: int, durability: str) -> None:
    queue = SqliteQueue(path, durability=durability)
    await queue.open()
    try:
        await enqueue_noops(queue, SERVICE, jobs)
    finally:
        await queue.close()


def _deepen(path: Path, depth: int) -> None:
    """Copy the service's Ready jobs (same columns, new ids) until ``depth`` are Ready: a
    deep queue in seconds, built by SQLite itself, whatever the schema's revision."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(usvc_jobs)")]
        copied = ", ".join(c for c in columns if c != "id")
        while True:
            (ready,) = conn.execute(
                "SELECT count(*) FROM usvc_jobs WHERE microservice = ? AND status = 'Ready'",
                (SERVICE,),
            ).fetchone()
            if ready >= depth:
                break
            conn.execute("BEGIN")
            conn.execute(
                f"INSERT INTO usvc_jobs ({copied}) SELECT {copied} FROM usvc_jobs "
                "WHERE microservice = ? AND status = 'Ready' LIMIT ?",
                (SERVICE, depth - ready),
            )
            conn.execute("COMMIT")
        # Start the drain from a settled file, as a queue that grew over days would be: the
        # copies written into the database, the WAL emptied.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


#: Completed jobs of the service, counted on the small partial index of finished jobs (the
#: ``IN`` term makes that index usable): the watcher must not scan a 500,000-row table
#: every poll, or it measures itself (it did: 170 ms a count, competing with the worker).
_COUNT_COMPLETED = (
    "SELECT count(*) FROM usvc_jobs WHERE microservice = ? "
    "AND status IN ('Completed', 'Failed') AND status = 'Completed'"
)


def _completed(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (done,) = conn.execute(_COUNT_COMPLETED, (SERVICE,)).fetchone()
    conn.close()
    return int(done)


def _completed_rate(path: Path, jobs: int) -> float:
    """The first ``jobs`` Completed jobs over the time from the first start to the
    ``jobs``-th finish: jobs finished while the worker was being stopped are not counted,
    so its shutdown never stretches the window."""
    with sqlite3.connect(path) as conn:
        done = "microservice = ? AND status IN ('Completed', 'Failed') AND status = 'Completed'"
        (first,) = conn.execute(
            f"SELECT min(started_at) FROM usvc_jobs WHERE {done}", (SERVICE,)
        ).fetchone()
        (last,) = conn.execute(
            f"SELECT finished_at FROM usvc_jobs WHERE {done} ORDER BY finished_at LIMIT 1 OFFSET ?",
            (SERVICE, jobs - 1),
        ).fetchone()
    conn.close()
    return float(jobs / (last - first))


def _unfinished(path: Path) -> tuple[int, int]:
    """(Ready jobs, Assigned or Processing jobs): two lookups on the partial indexes, so
    that watching the drain costs the machine next to nothing."""
    with sqlite3.connect(path) as conn:
        ready, owned = conn.execute(
            "SELECT (SELECT count(*) FROM usvc_jobs WHERE microservice = ? AND status = 'Ready'),"
            " (SELECT count(*) FROM usvc_jobs WHERE microservice = ?"
            "  AND status IN ('Assigned', 'Processing'))",
            (SERVICE, SERVICE),
        ).fetchone()
    conn.close()
    return int(ready), int(owned)


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


def _cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU time (user + system) a process has used so far: (its main thread, all its other
    threads); None where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / tick
            if task.name == str(pid):
                main += seconds
            else:
                other += seconds
    except OSError:
        return None
    return main, other


def end_to_end(
    path: Path,
    jobs: int,
    durability: str,
    concurrency: int,
    *,
    depth: int = 0,
    ablate: frozenset[str] = frozenset(),
) -> tuple[float, int, tuple[float, ...] | None]:
    """Drain ``jobs`` no-op jobs through one worker process.

    Returns jobs/s, the commits its queue made, and its CPU time per job in microseconds
    (event-loop thread, other threads), from its first claim to the end of the drain (None
    without /proc).

    With ``depth`` above ``jobs`` the file holds ``depth`` Ready jobs and the worker is
    stopped once ``jobs`` of them are Completed; the rate is over the jobs it completed.

    ``ablate`` names parts of the kit the worker process runs without (``ABLATIONS``; for
    ``bench/sqlite_counts.py --ablate``); empty, it is the ``sqlite`` case's worker.
    """
    asyncio.run(_fill(path, jobs, durability))
    deep = depth > jobs
    if deep:
        _deepen(path, depth)
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
        "BENCH_ABLATE": ",".join(sorted(ablate)),
    }
    errors = path.with_suffix(".stderr")
    with errors.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            env=env,
            cwd=path.parent,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    cpu_at_start: tuple[float, float] | None = None
    try:
        deadline = time.monotonic() + max(120.0, jobs / 100)
        # Deep: only the count of Completed jobs is watched (on the small index of finished
        # jobs); counting 500,000 Ready ones every poll would load the machine measured.
        while (left := (jobs - _completed(path), 0) if deep else _unfinished(path)) != (0, 0):
            if deep and left[0] <= 0:
                break
            if cpu_at_start is None and left[0] < jobs:  # the first claim happened
                cpu_at_start = _cpu_seconds(worker.pid)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited early: {errors.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained in time: {_counts(path)}")
            time.sleep(0.02 if cpu_at_start is None else 0.25)
        cpu_at_end = _cpu_seconds(worker.pid)
        if not deep and (counts := _counts(path)) != {"Completed": jobs}:
            raise RuntimeError(f"the drain did not complete every job: {counts}")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    transactions = json.loads(stats_file.read_text())["transactions"] if stats_file.exists() else 0
    cpu_per_job = (
        tuple(
            (end - start) / jobs * 1e6 for start, end in zip(cpu_at_start, cpu_at_end, strict=True)
        )
        if cpu_at_start is not None and cpu_at_end is not None
        else None
    )
    if deep:
        return _completed_rate(path, jobs), transactions, None
    return jobs / _drain_seconds(path), transactions, cpu_per_job


def floor(path: Path, jobs: int, durability: str) -> tuple[float, float]:
    """The worker's queue statements (claim-and-start, complete) in a bare blocking loop;
    returns jobs/s and CPU time per job in microseconds."""
    asyncio.run(_fill(path, jobs, durability))
    mode = Durability(durability)
    claim_sync = synchronous_for(mode, durable=False)
    finish_sync = synchronous_for(mode, durable=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        done = 0
        began = time.perf_counter()
        cpu = time.process_time()
        while True:
            conn.execute(f"PRAGMA synchronous = {claim_sync}")
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM_STARTED, ("floor", 30.0, SERVICE, BATCH)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                break
            conn.execute(f"PRAGMA synchronous = {finish_sync}")
            conn.execute("BEGIN IMMEDIATE")
            for row in rows:
                conn.execute(COMPLETE, ("null", 0.0, row[0], row[12]))
            if COUNT_FINISHED is not None:
                ids = ", ".join("?" * len(rows))
                conn.execute(
                    COUNT_FINISHED.replace("<ids>", ids), ("Completed", *(row[0] for row in rows))
                )
            conn.execute("COMMIT")
            done += len(rows)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
    finally:
        conn.close()
    if done != jobs:
        raise RuntimeError(f"the floor loop finished {done} of {jobs} jobs")
    return jobs / elapsed, cpu / jobs * 1e6


def prototype(path: Path, jobs: int, durability: str, concurrency: int) -> tuple[float, float]:
    """bench/sqlite_prototype.py on a file filled the same way: jobs/s from the rows, and
    CPU µs per job (every thread of this process while it drains)."""
    from sqlite_prototype import drain_prototype

    asyncio.run(_fill(path, jobs, durability))
    cpu = time.process_time()
    done = asyncio.run(drain_prototype(path, SERVICE, jobs, durability, concurrency))
    cpu = time.process_time() - cpu
    if done != jobs or _counts(path) != {"Completed": jobs}:
        raise RuntimeError(f"the prototype completed {done} of {jobs} jobs: {_counts(path)}")
    return jobs / _drain_seconds(path), cpu / jobs * 1e6


def fsync_ms(directory: Path, commits: int = 50) -> float:
    """Median time of a one-row ``synchronous=FULL`` commit in WAL mode, in ms: what one
    durable commit costs on this disk right now."""
    conn = sqlite3.connect(directory / "probe.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE probe (x)")
        times = []
        for n in range(commits):
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO probe VALUES (?)", (n,))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - began)
    finally:
        conn.close()
    return sorted(times)[len(times) // 2] * 1000


def _machine() -> str:
    cpu = cpu_model(default=platform.processor() or platform.machine())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def run(
    jobs: int = JOBS,
    *,
    durability: str = "full",
    concurrency: int = 10,
    workdir: Path | None = None,
) -> DrainResult:
    """Measure end to end and floor on files under ``workdir`` (default: a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="usvc-bench-", dir=workdir) as tmp:
        e2e, transactions, e2e_cpu = end_to_end(
            Path(tmp) / "drain.db", jobs, durability, concurrency
        )
        bare, bare_cpu = floor(Path(tmp) / "floor.db", jobs, durability)
        proto, proto_cpu = prototype(Path(tmp) / "prototype.db", jobs, durability, concurrency)
        commit_ms = fsync_ms(Path(tmp))
    return DrainResult(
        jobs=jobs,
        durability=durability,
        concurrency=concurrency,
        end_to_end_jobs_per_second=e2e,
        floor_jobs_per_second=bare,
        ratio=e2e / bare,
        prototype_jobs_per_second=proto,
        prototype_ratio=e2e / proto,
        prototype_cpu_us_per_job=proto_cpu,
        transactions=transactions,
        end_to_end_cpu_us_per_job=e2e_cpu,
        floor_cpu_us_per_job=bare_cpu,
        machine=_machine(),
        fsync_ms=commit_ms,
        load_average=os.getloadavg()[0],
    )


def depth_rates(
    jobs: int, depth: int, durability: str = "full", concurrency: int = 10
) -> dict[str, float]:
    """jobs/s of one worker draining ``jobs`` from a queue holding ``depth`` Ready jobs
    (stopped after ``jobs``), and from a shallow queue measured just before and just after
    it (their mean is the floor: a machine whose load drifts during the case moves both
    sides alike)."""
    with tempfile.TemporaryDirectory(prefix="usvc-bench-depth-") as tmp:
        before, _, _ = end_to_end(Path(tmp) / "shallow-1.db", jobs, durability, concurrency)
        deep, _, _ = end_to_end(
            Path(tmp) / "deep.db", jobs, durability, concurrency, depth=max(depth, jobs + 1)
        )
        after, _, _ = end_to_end(Path(tmp) / "shallow-2.db", jobs, durability, concurrency)
    shallow = (before + after) / 2
    return {"jobs": jobs, "depth": depth, "shallow_jobs_per_second": shallow,
            "deep_jobs_per_second": deep, "ratio": deep / shallow}  # fmt: skip


#: What ``end_to_end(ablate=...)`` can take out of the worker process. The kit offers no
#: switch for these, so ``_ablate`` monkeypatches them (bench only, never the ``sqlite`` case).
ABLATIONS = ("info line", "metrics", "log context")


def _ablate(parts: set[str]) -> None:
    """Switch ``parts`` (of ``ABLATIONS``) off in this process, before the app starts."""
    import functools
    import logging

    import usvc_core.app as app_module
    import usvc_core.worker as worker_module
    from usvc_core.metrics import NullMetrics

    if unknown := parts - set(ABLATIONS):
        raise ValueError(f"unknown ablation(s): {sorted(unknown)}")
    if "info line" in parts:
        # The app's own configure_logging call, at WARNING: the "job completed" line is off.
        configured = functools.partial(app_module.configure_logging, level=logging.WARNING)
        setattr(app_module, "configure_logging", configured)  # noqa: B010
    if "metrics" in parts:
        # The worker's adapter only (per-job calls); the app's periodic ones stay.
        init = worker_module.Worker.__init__

        def null_metrics_init(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self.metrics = NullMetrics()

        setattr(worker_module.Worker, "__init__", null_metrics_init)  # noqa: B010
    if "log context" in parts:
        # The worker module's own reference to the binder (as bench/counts.py does).
        setattr(worker_module, "bind_job_context", lambda *_args: None)  # noqa: B010


def _serve() -> None:
    """The worker process: one no-op action, everything else from the environment."""
    if parts := os.environ.get("BENCH_ABLATE"):
        _ablate(set(parts.split(",")))
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
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs to drain ({JOBS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS} jobs, a smoke run")
    parser.add_argument("--durability", choices=[d.value for d in Durability], default="full")
    parser.add_argument("--concurrency", type=int, default=10, help="MAX_CONCURRENT_JOBS (10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--depth",
        type=int,
        default=0,
        help="only the depth figures: --jobs drained from a queue DEPTH Ready jobs deep, "
        "and from a shallow one (--jobs deep), alternating",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve()
        return 0
    jobs = QUICK_JOBS if args.quick else args.jobs
    if args.depth:
        print(json.dumps(depth_rates(jobs, args.depth, args.durability, args.concurrency)))
        return 0
    result = run(jobs, durability=args.durability, concurrency=args.concurrency)
    if args.json:
        print(json.dumps({**asdict(result), "meets_target": result.meets_target}))
        return 0
    print(f"machine:     {result.machine}")
    print(
        f"conditions:  load average {result.load_average:.1f}, one durable commit "
        f"{result.fsync_ms:.2f} ms"
    )
    print(
        f"drain:       {result.jobs} no-op jobs, MAX_CONCURRENT_JOBS={result.concurrency}, "
        f"durability={result.durability}"
    )
    cpu = result.end_to_end_cpu_us_per_job
    print(
        f"end to end:  {result.end_to_end_jobs_per_second:8.0f} jobs/s"
        + (
            f"  (worker CPU per job: {sum(cpu):.0f} us = {cpu[0]:.0f} event loop"
            f" + {cpu[1]:.0f} other threads: fsyncs, reads, checkpoints)"
            if cpu
            else ""
        )
    )
    print(
        f"floor:       {result.floor_jobs_per_second:8.0f} jobs/s  (bare sqlite3 loop, "
        f"{result.floor_cpu_us_per_job:.0f} us CPU per job)"
    )
    print(f"ratio:       {result.ratio:8.2f}")
    print(
        f"prototype:   {result.prototype_jobs_per_second:8.0f} jobs/s  (same design, no kit: "
        f"bench/sqlite_prototype.py, {result.prototype_cpu_us_per_job:.0f} us CPU per job); "
        f"ratio {result.prototype_ratio:.2f}"
    )
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
