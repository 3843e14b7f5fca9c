"""Where a durable SQLite drain's time goes, per job: the worker (``Application`` on a
SQLite file, as ``bench/sqlite_drain.py`` runs it, JSON log lines to /dev/null) drains the
file in this process under cProfile, next to the prototype of the same design
(``bench/sqlite_prototype.py``) on a file filled the same way.

    uv run python bench/sqlite_counts.py --jobs 3000 --top 25

Counts are calls per job by layer (every thread of the process: in 3.12 cProfile sees
them all) and the CPU time per job of each side without the profiler.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import sqlite_drain  # noqa: E402
from counts import layer_of  # noqa: E402
from sqlite_prototype import drain_prototype  # noqa: E402

__all__ = ["profile_kit"]

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


async def _kit(path: Path, jobs: int, profiler: cProfile.Profile | None) -> float:
    """Drain ``path`` with the kit's worker in this process; returns CPU seconds."""
    from usvc_core import Application
    from usvc_core.logging import configure_logging

    os.environ.update(
        MICROSERVICE_NAME=sqlite_drain.SERVICE,
        QUEUE_URL=f"sqlite:///{path}",
        MAX_CONCURRENT_JOBS="10",
        POLLING_INTERVAL_SECONDS="0.5",
        HTTP_ENABLED="False",
        DEV_MODE="False",
    )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
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
