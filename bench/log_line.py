"""CPU and calls of the worker's INFO "job completed" line, one line alone: JSON and console.

    uv run python bench/log_line.py                      # both formats
    uv run python bench/log_line.py --profile 15         # and the costliest functions
    valgrind --tool=callgrind python bench/log_line.py json --rounds 1 --lines 2000 --profile -1
                                                         # instructions: minus a run with 1000

The line is logged the way the worker logs it (``Worker._completed`` on a stand-in worker
with nothing to resolve), inside a running event loop, in a context like a job's (the
job's three keys bound, an OpenTelemetry context attached), to /dev/null. CPU: thread time
per line, the minimum and the median of ``--rounds`` rounds of ``--lines`` lines.
Calls: cProfile's count per line (Python functions and built-ins).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import time
from types import SimpleNamespace
from typing import Any

__all__ = ["main"]


async def _measure(json: bool, rounds: int, lines: int, profile: int) -> list[str]:
    from opentelemetry import context as otel_context
    from usvc_core.logging import bind_job_context, configure_logging
    from usvc_core.worker import Worker

    devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - the whole run
    configure_logging(json=json, stream=devnull)
    bind_job_context("tok-0123456789abcdef", "job-0123456789", "noop")
    otel_context.attach(otel_context.Context())
    worker: Any = SimpleNamespace(_queue_failures=0, _waiters={})
    completed = Worker._completed
    for _ in range(2000):  # warm-up
        completed(worker, "job-0123456789", 0.123456)
    await asyncio.sleep(0)
    gc.collect()
    per_line = []
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(lines):
            completed(worker, "job-0123456789", 0.123456)
        per_line.append((time.thread_time() - began) / lines * 1e6)
        await asyncio.sleep(0)  # the turn's flush, as the worker's loop would
    if profile < 0:  # under callgrind: the rounds only
        return []
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(lines):
        completed(worker, "job-0123456789", 0.123456)
    profiler.disable()
    await asyncio.sleep(0)
    stats: Any = pstats.Stats(profiler)
    total_calls = sum(ncalls for (_cc, ncalls, *_rest) in stats.stats.values())
    name = "json" if json else "console"
    out = [
        f"{name}: CPU per line min {min(per_line):.2f} µs, median "
        f"{statistics.median(per_line):.2f} µs ({rounds} rounds of {lines}); "
        f"{total_calls / lines - 1:.1f} calls per line (cProfile, without _completed's own)"
    ]
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cum, _c) in stats.stats.items():
        where = "/".join(filename.split("/")[-2:])
        rows.append((tottime, ncalls, cum, f"{func} ({where}:{line})"))
    rows.sort(reverse=True)
    for t, n, c, func in rows[:profile]:
        out.append(f"  {n / lines:6.2f} {t / lines * 1e6:8.2f} {c / lines * 1e6:8.2f}  {func}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("format", nargs="?", choices=["json", "console"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="show the N costliest functions (-1: no profile, no report)",
    )
    args = parser.parse_args()
    for fmt in [args.format] if args.format else ["json", "console"]:
        report = asyncio.run(_measure(fmt == "json", args.rounds, args.lines, args.profile))
        if report:
            print("\n".join(report))


if __name__ == "__main__":
    main()
