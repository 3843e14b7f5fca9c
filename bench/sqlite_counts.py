"""Where a durable SQLite drain's time goes, per job: the worker (``Application`` on a
SQLite file, as ``bench/sqlite_drain.py`` runs it, JSON log lines to /dev/null) drains the
file in this process under cProfile, next to the prototype of the same design
(``bench/sqlite_prototype.py``) on a file filled the same way.

    uv run python bench/sqlite_counts.py --jobs 3000 --top 25
    uv run python bench/sqlite_counts.py --ablate --jobs 20000 --rounds 7
    uv run python bench/sqlite_counts.py --ablate --rounds 0 --callgrind 1000   # instructions

Counts are calls per job by layer (every thread of the process: in 3.12 cProfile sees
them all) and the CPU time per job of each side without the profiler.

``--ablate`` prices the promises the kit keeps and the prototype does not: the ``sqlite``
case's worker process (``bench/sqlite_drain.py``'s, JSON INFO line per job to /dev/null)
with none, one or all three of the INFO line, the worker's metrics and the job's log
context switched off (monkeypatched in the worker process, see ``sqlite_drain._ablate``),
and the prototype, each in a fresh process on a freshly filled file, in alternating order
round after round. Per variant: the worker process's CPU per job (all threads, from its
first claim to the drain's end, from /proc), its drain rate (jobs over the rows' first
start to last finish), medians of the rounds, and each one's ratio to the prototype's.
``--callgrind N`` adds instructions per job (every thread; ``valgrind --tool=callgrind``):
a fresh process draining N jobs (``Application.serve``, the same settings) minus one
draining none; deterministic where CPU time wanders with the machine's load. Under
callgrind the CPU is slower against the disk, so group commits are larger than in a real
drain: read the differences between variants, not the absolute SQL share.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import os
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sqlite_drain  # noqa: E402
from counts import layer_of  # noqa: E402
from procs import callgrind_instructions  # noqa: E402
from sqlite_prototype import drain_prototype  # noqa: E402

__all__ = ["VARIANTS", "ablate", "profile_kit"]

_LAYERS = (
    ("sqlite adapter", "usvc_sqlite/"),
    ("sqlite adapter", "queues/sqlite/"),
    ("adapter support", "usvc_core/adapter_support"),
    ("sqlite3 (C)", "sqlite3"),
    ("prototype", "bench/sqlite_prototype.py"),
)


def _layer(filename: str, func: str) -> str:
    for layer, fragment in _LAYERS:
        if fragment in filename or fragment in func:
            return layer
    return layer_of(filename)


def _worker_settings(path: Path, **overrides: str) -> None:
    """The ``sqlite`` case's worker settings for a drain of ``path`` in this process."""
    os.environ.update(
        MICROSERVICE_NAME=sqlite_drain.SERVICE,
        QUEUE_URL=f"sqlite:///{path}",
        MAX_CONCURRENT_JOBS="10",
        POLLING_INTERVAL_SECONDS="0.5",
        HTTP_ENABLED="False",
        DEV_MODE="False",
    )
    os.environ.update(overrides)


async def _kit(path: Path, jobs: int, profiler: cProfile.Profile | None) -> float:
    """Drain ``path`` with the kit's worker in this process; returns CPU seconds."""
    from usvc_core import Application
    from usvc_core.logging import configure_logging

    _worker_settings(path)
    configure_logging(json=True, stream=open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    app = Application(configure_logging=False)
    app.add_action(sqlite_drain.noop)
    await app.start()
    try:
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        # Only Completed jobs are counted (their small index): the queue's own stats would
        # count every Ready job, which on a deep queue costs more than the drain.
        while sqlite_drain._completed(path) < jobs:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if profiler is not None:
            profiler.disable()
        return time.process_time() - cpu
    finally:
        await app.stop()


def _fill(path: Path, jobs: int) -> None:
    asyncio.run(sqlite_drain._fill(path, jobs, "full"))


def profile_kit(jobs: int, top: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="usvc-bench-sqlite-counts-") as tmp:
        # Unprofiled CPU per job: kit and prototype, then the kit under the profiler.
        kit_db, proto_db, prof_db = (Path(tmp) / f"{n}.db" for n in ("kit", "proto", "prof"))
        _fill(kit_db, jobs)
        kit_cpu = asyncio.run(_kit(kit_db, jobs, None))
        _fill(proto_db, jobs)
        cpu = time.process_time()
        asyncio.run(drain_prototype(proto_db, sqlite_drain.SERVICE, jobs, "full"))
        proto_cpu = time.process_time() - cpu
        _fill(prof_db, jobs)
        profiler = cProfile.Profile()
        asyncio.run(_kit(prof_db, jobs, profiler))
        with sqlite3.connect(prof_db) as conn:
            (done,) = conn.execute(
                "SELECT count(*) FROM usvc_jobs WHERE status = 'Completed'"
            ).fetchone()
        conn.close()
    stats = pstats.Stats(profiler)
    layers: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        layer = _layer(filename, func)
        layers[layer][0] += ncalls
        layers[layer][1] += tottime
        rows.append((tottime, ncalls, f"{func} ({'/'.join(filename.split('/')[-2:])}:{line})"))
    rows.sort(reverse=True)
    return {
        "jobs": done,
        "kit_cpu_us_per_job": kit_cpu / jobs * 1e6,
        "prototype_cpu_us_per_job": proto_cpu / jobs * 1e6,
        "calls_per_job": sum(v[0] for v in layers.values()) / done,
        "layers": {
            k: {"calls": c / done, "profiled_us": t / done * 1e6}
            for k, (c, t) in sorted(layers.items(), key=lambda kv: -kv[1][1])
        },
        "top": [(n / done, t / done * 1e6, name) for t, n, name in rows[:top]],
    }


#: ``--ablate``'s variants: what each worker process runs without (sqlite_drain.ABLATIONS);
#: None is the prototype.
VARIANTS: dict[str, frozenset[str] | None] = {
    "kit": frozenset(),
    "no INFO line": frozenset({"info line"}),
    "no metrics": frozenset({"metrics"}),
    "no log context": frozenset({"log context"}),
    "none of the three": frozenset(sqlite_drain.ABLATIONS),
    "prototype": None,
}


def _prototype_child(path: Path, jobs: int) -> None:
    """The prototype's drain in this (fresh) process: prints its CPU seconds, all threads."""
    cpu = time.process_time()
    done = asyncio.run(drain_prototype(path, sqlite_drain.SERVICE, jobs, "full"))
    print(json.dumps({"completed": done, "cpu_seconds": time.process_time() - cpu}))


def _prototype(path: Path, jobs: int) -> tuple[float, float]:
    """jobs/s and CPU µs per job of the prototype, in a fresh process on ``path``."""
    _fill(path, jobs)
    child = subprocess.run(
        [sys.executable, __file__, "--prototype-child", str(path), "--jobs", str(jobs)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(child.stdout.splitlines()[-1])
    if report["completed"] != jobs or sqlite_drain._counts(path) != {"Completed": jobs}:
        raise RuntimeError(f"the prototype completed {report['completed']} of {jobs} jobs")
    return jobs / sqlite_drain._drain_seconds(path), report["cpu_seconds"] / jobs * 1e6


def _variant(path: Path, jobs: int, parts: frozenset[str] | None) -> tuple[float, float]:
    """jobs/s and CPU µs per job (all threads) of one variant on a fresh file."""
    if parts is None:
        return _prototype(path, jobs)
    rate, _, cpu = sqlite_drain.end_to_end(path, jobs, "full", 10, ablate=parts)
    if cpu is None:
        # No /proc, or the drain was over before the watcher (every 20 ms) saw it begin.
        raise RuntimeError("the worker's CPU time was not read: no /proc, or too few --jobs")
    return rate, sum(cpu)


def _kit_child(path: Path, jobs: int, parts: frozenset[str]) -> None:
    """The ``sqlite`` case's worker (its settings, ``Application.serve``, JSON lines to
    /dev/null) with ``parts`` off, in this process, stopped once ``jobs`` are Completed:
    what ``--callgrind`` counts (minus the same with none)."""
    from usvc_core import Application
    from usvc_core.worker import QUEUE_CHECK

    count = sqlite_drain._COUNT_COMPLETED
    _worker_settings(path, QUEUE_URL=f"sqlite:///{path}?durability=full", LOG_CONSOLE_JSON="True")
    if parts:
        sqlite_drain._ablate(set(parts))
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's whole life

    async def drain() -> None:
        app = Application()
        app.add_action(sqlite_drain.noop)
        serving = asyncio.create_task(app.serve())
        # One connection, a look every 0.25 s: watching costs next to nothing per job.
        with sqlite3.connect(path) as conn:
            while True:
                await asyncio.sleep(0.25)
                (done,) = conn.execute(count, (sqlite_drain.SERVICE,)).fetchone()
                # Also with no jobs: the worker has started and polled the queue once.
                check = app.health.get(QUEUE_CHECK)
                if done >= jobs and check is not None and check.details["last_poll"] == "ok":
                    break
        conn.close()
        app.request_stop()
        await serving

    asyncio.run(drain())


def _instructions(directory: Path, jobs: int, parts: frozenset[str] | None) -> float:
    """Instructions per job under callgrind (every thread): a fresh process draining
    ``jobs`` minus one draining none (the same start-up and shutdown)."""
    counts = []
    for n in (jobs, 0):
        path = directory / f"cg{n}.db"
        _fill(path, n)
        child = (
            ["--prototype-child", str(path)]
            if parts is None
            else ["--kit-child", str(path), "--parts", ",".join(sorted(parts))]
        )
        argv = [sys.executable, __file__, *child, "--jobs", str(n)]
        instructions = callgrind_instructions(argv, f"{directory}/{n}.cg")
        if sqlite_drain._counts(path) != ({"Completed": n} if n else {}):
            raise RuntimeError(f"the drain under callgrind left {sqlite_drain._counts(path)}")
        counts.append(instructions)
    return (counts[0] - counts[1]) / jobs


def ablate(jobs: int, rounds: int, callgrind: int = 0) -> dict[str, dict[str, Any]]:
    """Per variant: medians over ``rounds`` alternating rounds of CPU µs per job and jobs/s,
    their ratios to the prototype's medians, and every sample."""
    samples: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="usvc-bench-sqlite-ablate-") as tmp:
        for n in range(rounds):
            order = list(VARIANTS) if n % 2 == 0 else list(reversed(VARIANTS))
            for i, variant in enumerate(order):
                directory = Path(tmp) / f"r{n}-v{i}"  # a fresh file per drain
                directory.mkdir()
                samples[variant].append(_variant(directory / "drain.db", jobs, VARIANTS[variant]))
                shutil.rmtree(directory)
    report: dict[str, dict[str, Any]] = {v: {} for v in VARIANTS}
    for variant, rows in samples.items() if rounds else ():  # --rounds 0: callgrind only
        proto_cpu = statistics.median(cpu for _, cpu in samples["prototype"])
        proto_rate = statistics.median(rate for rate, _ in samples["prototype"])
        cpu = statistics.median(c for _, c in rows)
        rate = statistics.median(r for r, _ in rows)
        report[variant] = {
            "cpu_us_per_job": cpu,
            "jobs_per_second": rate,
            "cpu_ratio": cpu / proto_cpu,
            "rate_ratio": rate / proto_rate,
            "samples": rows,
        }
    if callgrind:
        for variant, parts in VARIANTS.items():
            with tempfile.TemporaryDirectory(prefix="usvc-bench-sqlite-cg-") as tmp:
                report[variant]["instructions_per_job"] = _instructions(Path(tmp), callgrind, parts)
        proto = report["prototype"]["instructions_per_job"]
        for row in report.values():
            row["instructions_ratio"] = row["instructions_per_job"] / proto
    return report


def _print_ablation(report: dict[str, dict[str, Any]], jobs: int, rounds: int) -> None:
    kit = report["kit"]
    print(
        f"{jobs} no-op jobs, durable, MAX_CONCURRENT_JOBS=10, medians of {rounds} rounds "
        f"(load average now {os.getloadavg()[0]:.1f}); kit - this: what the part costs"
    )
    for variant, row in report.items():
        line = f"{variant:18}"
        if "cpu_us_per_job" in row:
            saved = kit["cpu_us_per_job"] - row["cpu_us_per_job"]
            line += (
                f" CPU {row['cpu_us_per_job']:6.1f} µs/job ({row['cpu_ratio']:.2f} of the "
                f"prototype's, kit - this {saved:6.1f}), {row['jobs_per_second']:6.0f} jobs/s "
                f"({row['rate_ratio']:.2f})"
            )
        if "instructions_per_job" in row:
            saved = kit["instructions_per_job"] - row["instructions_per_job"]
            line += (
                f" {row['instructions_per_job'] / 1000:6.1f}k instructions/job "
                f"({row['instructions_ratio']:.2f}, kit - this {saved / 1000:6.1f}k)"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ablate", action="store_true", help="price each promise (see above)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of --ablate")
    parser.add_argument("--json", action="store_true", help="--ablate's figures as JSON")
    parser.add_argument(
        "--callgrind", type=int, default=0, help="--ablate: also instructions per job, N jobs"
    )
    parser.add_argument("--prototype-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kit-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parts", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prototype_child is not None:
        _prototype_child(args.prototype_child, args.jobs)
        return
    if args.kit_child is not None:
        _kit_child(args.kit_child, args.jobs, frozenset(filter(None, args.parts.split(","))))
        return
    if args.ablate:
        ablation = ablate(args.jobs, args.rounds, args.callgrind)
        if args.json:
            print(json.dumps(ablation))
        else:
            _print_ablation(ablation, args.jobs, args.rounds)
        return
    report = profile_kit(args.jobs, args.top)
    print(
        f"kit: {report['kit_cpu_us_per_job']:.0f} µs CPU per job (all threads); prototype: "
        f"{report['prototype_cpu_us_per_job']:.0f} µs; profiled: "
        f"{report['calls_per_job']:.0f} calls per job"
    )
    for name, row in report["layers"].items():
        print(f"  {name:22} {row['calls']:8.1f} calls {row['profiled_us']:9.1f} µs (profiled)")
    for calls, us, name in report["top"]:
        print(f"  {calls:7.2f} {us:8.1f}  {name}")


if __name__ == "__main__":
    main()
