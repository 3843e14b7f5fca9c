"""In-memory drain, run as its own process so that logging set-up and heap state of one
measurement never leak into another.

    python bench/drain.py kit floor --jobs 20000      # one JSON line per mode on stdout

Modes:
- ``floor``: a bare asyncio loop that validates each payload with the no-op action's input
  model and awaits its handler, 10 at a time: the least any worker can do per job.
- ``kit``: ``Application`` with an ``InMemoryQueue`` already holding the jobs, the default
  metrics adapter, no HTTP surface, ``MAX_CONCURRENT_JOBS=10`` and log level WARNING.
- ``kit-logs``: the same with INFO JSON log lines written to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from usvc_core import (
    ActionDefinition,
    Application,
    EnqueueRequest,
    Job,
    JobStatus,
    WorkerSettings,
    configure_logging,
)
from usvc_core.actions.discovery import discover_actions
from usvc_testing import InMemoryQueue

ACTIONS_DIR = Path(__file__).resolve().parent / "service" / "src" / "actions"
SERVICE = "bench"
CONCURRENCY = 10
FLOOR_RUNS = 3

__all__ = [
    "configure_quiet_logging",
    "drain_floor",
    "drain_kit",
    "noop_definition",
    "payloads",
    "started_kit",
]


def noop_definition() -> ActionDefinition:
    """The bench service's no-op action, loaded the way the kit discovers it."""
    (handler,) = discover_actions(ACTIONS_DIR)
    return ActionDefinition.from_handler(handler)


def payloads(count: int) -> list[dict[str, Any]]:
    return [{"action": "noop", "n": i, "name": "bench"} for i in range(count)]


async def drain_floor(count: int) -> tuple[float, float]:
    """Wall and CPU seconds for the bare loop to validate and run ``count`` jobs, 10 at a
    time."""
    definition = noop_definition()
    model = definition.input_model
    assert model is not None
    handler: Callable[[BaseModel], Awaitable[Any]] = definition.handler
    jobs = iter(payloads(count))

    async def lane() -> None:
        for payload in jobs:
            data = {k: v for k, v in payload.items() if k != "action"}
            await handler(model.model_validate(data))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, time.process_time() - cpu


async def started_kit(count: int) -> tuple[Application, InMemoryQueue, list[Job]]:
    """An started ``Application`` whose in-memory queue holds ``count`` no-op jobs; its worker
    task has not run yet, so nothing is claimed before the caller's next ``await``."""
    settings = WorkerSettings(
        _env_file=None,  # only what is passed here
        MICROSERVICE_NAME=SERVICE,
        DEV_MODE=True,
        MAX_CONCURRENT_JOBS=CONCURRENCY,
        HTTP_ENABLED=False,
    )
    queue = InMemoryQueue()
    app = Application(
        ACTIONS_DIR, settings=settings, queue=queue, surfaces=[], configure_logging=False
    )
    jobs = await queue.enqueue_many([EnqueueRequest(p, SERVICE) for p in payloads(count)])
    await app.start()
    return app, queue, jobs


async def drain_kit(count: int) -> tuple[float, float]:
    """Wall and CPU seconds for one worker to drain ``count`` queued no-op jobs to
    Completed."""
    app, queue, jobs = await started_kit(count)
    try:
        # The worker task has not run yet: nothing can finish before this watch.
        last = app.worker.watch(jobs[-1].id)
        started, cpu = time.perf_counter(), time.process_time()
        await last
        # Jobs of the last batch may finish a moment after the last one claimed; no event
        # tells when every outcome is recorded, so poll briefly.
        while (await queue.stats(SERVICE)).counts[JobStatus.COMPLETED] < count:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await app.stop()
    return elapsed


def configure_quiet_logging() -> None:
    """What the ``kit`` mode runs with: JSON lines at WARNING (no line per job)."""
    configure_logging(json=True, stream=sys.stderr, level=logging.WARNING)


def _configure(mode: str, log_file: Path) -> None:
    if mode == "kit-logs":
        configure_logging(json=True, stream=log_file.open("w", encoding="utf-8"))
    else:
        configure_quiet_logging()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="+", choices=["floor", "kit", "kit-logs"])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument HTML of kit modes")
    args = parser.parse_args(argv)
    if "kit" in args.modes and "kit-logs" in args.modes:
        parser.error("kit and kit-logs configure logging differently: run them apart")
    log_file: Path = args.log_file or Path(tempfile.gettempdir()) / "usvc-bench-drain.log"
    kit_mode = "kit-logs" if "kit-logs" in args.modes else "kit"
    _configure(kit_mode, log_file)
    for mode in args.modes:
        if mode == "floor":
            # The floor lasts a fraction of a second, so one run is at the mercy of one
            # scheduler hiccup: take the median of a few.
            runs = sorted(asyncio.run(drain_floor(args.jobs)) for _ in range(FLOOR_RUNS))
            seconds, cpu = runs[len(runs) // 2]
        elif args.profile is not None:
            from pyinstrument import Profiler

            with Profiler(async_mode="disabled") as profiler:
                seconds, cpu = asyncio.run(drain_kit(args.jobs))
            profiler.write_html(args.profile)
            args.profile.with_suffix(".txt").write_text(profiler.output_text(show_all=False))
        else:
            seconds, cpu = asyncio.run(drain_kit(args.jobs))
        result: dict[str, Any] = {
            "mode": mode,
            "jobs": args.jobs,
            "seconds": seconds,
            "jobs_per_s": args.jobs / seconds,
            "cpu_seconds": cpu,
            "jobs_per_cpu_s": args.jobs / cpu if cpu else None,
        }
        if mode == "kit-logs":
            logging.getLogger().handlers[0].flush()
            with log_file.open("rb") as f:
                result["log_lines"] = sum(1 for _ in f)
            result["log_bytes"] = log_file.stat().st_size
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
