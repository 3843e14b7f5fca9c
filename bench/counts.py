"""Deterministic per-job counts of the in-memory drain, for comparing revisions on a busy
machine where wall-clock figures wander: function calls (cProfile), event-loop callbacks
(each one a resumption of a task or a scheduled call: the ``await`` hops that really
suspend), loop iterations, and memory allocated per job (tracemalloc).

    uv run python bench/counts.py --jobs 5000               # the table, grouped by layer
    uv run python bench/counts.py --jobs 5000 --json        # one JSON line
    uv run python bench/counts.py --jobs 5000 --top 40      # and the 40 costliest functions
    uv run python bench/counts.py --ablate --jobs 20000     # CPU µs/job without each part

Only the drain is counted: the jobs are enqueued and the application started before the
profiler is switched on, and it is switched off once the last outcome is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drain

__all__ = ["LAYERS", "count_drain", "layer_of"]

#: (layer, path fragment) in match order: the first fragment found in a function's file.
LAYERS: tuple[tuple[str, str], ...] = (
    ("worker", "usvc_core/worker.py"),
    ("execution", "usvc_core/execution.py"),
    ("decision", "usvc_core/decision.py"),
    ("jobs model", "usvc_core/jobs.py"),
    ("clock", "usvc_core/clock.py"),
    ("logging", "usvc_core/logging.py"),
    ("metrics", "metrics.py"),
    ("queue (in-memory)", "usvc_testing/queues"),
    ("structlog", "structlog/"),
    ("pydantic", "pydantic"),
    ("handler", "actions/noop"),
    ("asyncio", "asyncio/"),
    ("json", "json/"),
)


def layer_of(filename: str) -> str:
    for layer, fragment in LAYERS:
        if fragment in filename:
            return layer
    if filename == "~":
        return "builtins"
    return "other"


async def _profiled_drain(count: int, profiler: cProfile.Profile) -> dict[str, float]:
    """drain.drain_kit with the profiler and tracemalloc on during the drain only."""
    from usvc_core import JobStatus

    app, queue, jobs = await drain.started_kit(count)
    loop = asyncio.get_running_loop()
    iterations = 0
    original: Callable[[], None] = loop._run_once  # type: ignore[attr-defined]

    def counting_run_once() -> None:
        nonlocal iterations
        iterations += 1
        original()

    try:
        last = app.worker.watch(jobs[-1].id)
        loop._run_once = counting_run_once  # type: ignore[attr-defined]
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        profiler.enable()
        await last
        while (await queue.stats(drain.SERVICE)).counts[JobStatus.COMPLETED] < count:  # noqa: ASYNC110
            await asyncio.sleep(0)
        profiler.disable()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        loop._run_once = original  # type: ignore[attr-defined]
    finally:
        await app.stop()
    return {
        "loop_iterations_per_job": iterations / count,
        "retained_bytes_per_job": (current - before) / count,
        "peak_bytes_per_job": (peak - before) / count,
    }


def count_drain(count: int, top: int = 0) -> dict[str, Any]:
    drain.configure_quiet_logging()
    profiler = cProfile.Profile()
    extra = asyncio.run(_profiled_drain(count, profiler))
    stats = pstats.Stats(profiler)
    by_layer: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    rows = []
    callbacks = 0.0
    for (filename, line, func), (_cc, ncalls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        layer = layer_of(filename)
        by_layer[layer][0] += ncalls
        by_layer[layer][1] += tottime
        if func == "_run" and filename.endswith("asyncio/events.py"):
            callbacks += ncalls
        rows.append((tottime, ncalls, f"{func} ({'/'.join(filename.split('/')[-2:])}:{line})"))
    rows.sort(reverse=True)
    total_calls = sum(v[0] for v in by_layer.values())
    return {
        "jobs": count,
        "calls_per_job": total_calls / count,
        "loop_callbacks_per_job": callbacks / count,
        **extra,
        "layers": {
            name: {"calls_per_job": calls / count, "profiled_us_per_job": t / count * 1e6}
            for name, (calls, t) in sorted(by_layer.items(), key=lambda kv: -kv[1][1])
        },
        "top": [
            {"function": name, "calls_per_job": n / count, "profiled_us_per_job": t / count * 1e6}
            for t, n, name in rows[:top]
        ],
    }


#: What ``--ablate`` takes away, one at a time, to price it without a profiler's overhead.
_ABLATIONS = ("kit", "no metrics", "no log context", "minimal queue", "no gc", "floor")


def _minimal_queue(queue: Any, jobs: list[Any]) -> Any:
    """``queue`` with claim and complete replaced by the least a queue can do: hand out
    ready-made Processing jobs from a deque, count completions. Prices the in-memory
    queue's own per-job work (heaps, snapshots, lease tokens, timestamps)."""
    import collections as _collections
    import dataclasses

    from usvc_core import JobStatus

    ready = _collections.deque(
        dataclasses.replace(j, status=JobStatus.PROCESSING, attempts=1, lease_token="t")
        for j in jobs
    )
    done = [0]

    async def claim_and_start(*_args: Any, **_kwargs: Any) -> list[Any]:
        limit = _args[2]
        return [ready.popleft() for _ in range(min(limit, len(ready)))]

    async def complete(*_args: Any) -> None:
        done[0] += 1

    queue.claim_and_start, queue.complete = claim_and_start, complete
    return done


async def _ablated_drain(count: int, variant: str) -> float:
    """CPU seconds per job of one drain with ``variant``'s part switched off."""
    import usvc_core.worker as worker_module
    from usvc_core import JobStatus
    from usvc_core.metrics import NullMetrics

    if variant == "floor":
        return (await drain.drain_floor(count))[1] / count
    app, queue, jobs = await drain.started_kit(count)
    # The worker module's own reference to the log-context binder, swapped for a no-op.
    bind = getattr(worker_module, "bind_job_context")  # noqa: B009 - not exported
    try:
        if variant == "no metrics":
            app.worker.metrics = NullMetrics()
        if variant == "no log context":
            setattr(worker_module, "bind_job_context", lambda *_args: None)  # noqa: B010
        done = _minimal_queue(queue, jobs) if variant == "minimal queue" else None
        if variant == "no gc":
            gc.disable()
        last = app.worker.watch(jobs[-1].id)
        cpu = time.process_time()
        await last
        while (  # noqa: ASYNC110
            done[0] < count
            if done is not None
            else (await queue.stats(drain.SERVICE)).counts[JobStatus.COMPLETED] < count
        ):
            await asyncio.sleep(0)
        return (time.process_time() - cpu) / count
    finally:
        gc.enable()
        setattr(worker_module, "bind_job_context", bind)  # noqa: B010
        await app.stop()


def ablate(count: int, rounds: int) -> dict[str, float]:
    """Median CPU µs per job of each variant over ``rounds`` alternating rounds."""
    drain.configure_quiet_logging()
    samples: dict[str, list[float]] = {v: [] for v in _ABLATIONS}
    for n in range(rounds):
        order = _ABLATIONS if n % 2 == 0 else tuple(reversed(_ABLATIONS))
        for variant in order:
            samples[variant].append(asyncio.run(_ablated_drain(count, variant)) * 1e6)
    return {v: statistics.median(s) for v, s in samples.items()}


def _print(report: dict[str, Any]) -> None:
    print(
        f"{report['jobs']} jobs: {report['calls_per_job']:.1f} calls, "
        f"{report['loop_callbacks_per_job']:.2f} loop callbacks, "
        f"{report['loop_iterations_per_job']:.3f} loop iterations, "
        f"{report['peak_bytes_per_job']:.0f} B peak and "
        f"{report['retained_bytes_per_job']:.0f} B retained per job"
    )
    print(f"\n{'layer':20} {'calls/job':>10} {'µs/job (profiled)':>18}")
    for name, row in report["layers"].items():
        print(f"{name:20} {row['calls_per_job']:10.2f} {row['profiled_us_per_job']:18.2f}")
    if report["top"]:
        print(f"\n{'calls/job':>10} {'µs/job':>8}  function")
        for row in report["top"]:
            print(
                f"{row['calls_per_job']:10.2f} {row['profiled_us_per_job']:8.2f}  {row['function']}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ablate", action="store_true", help="CPU µs/job without each part")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of --ablate")
    args = parser.parse_args(argv)
    if args.ablate:
        medians = ablate(args.jobs, args.rounds)
        if args.json:
            print(json.dumps(medians))
            return
        kit = medians["kit"]
        for variant, us in medians.items():
            print(
                f"{variant:16} {us:6.2f} µs CPU/job"
                + ("" if variant == "kit" else f"  (kit - this: {kit - us:5.2f})")
            )
        return
    report = count_drain(args.jobs, args.top)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
