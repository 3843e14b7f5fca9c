"""Enqueue throughput through the queue port, one job per call and in batches, run as its own
process. Prints one JSON line per queue kind.

    python bench/enqueue.py memory sqlite --jobs 20000 --sqlite-jobs 2000 --batch 100

The SQLite queue is built the way ``Application`` builds it, from ``QUEUE_URL`` through the
``usvc.queues`` entry point, in its default (durable) mode; a line with ``"unavailable"``
says when this checkout has no SQLite queue yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from usvc_core import EnqueueRequest, JobQueue, UsvcError, WorkerSettings
from usvc_core.plugins import QUEUE_GROUP, load_entry_point

__all__ = ["make_queue", "measure"]

SERVICE = "bench"


def make_queue(kind: str, directory: Path, name: str) -> JobQueue:
    """A fresh queue of ``kind`` (``memory`` or ``sqlite``, a new file in ``directory``)."""
    url = "memory://" if kind == "memory" else f"sqlite:///{directory / name}.db"
    settings = WorkerSettings(
        _env_file=None,  # only what is passed here
        MICROSERVICE_NAME=SERVICE,
        QUEUE_URL=url,
    )
    factory = load_entry_point(QUEUE_GROUP, kind, "usvc-testing")
    queue: JobQueue = factory(url, settings)
    return queue


def _requests(count: int) -> list[EnqueueRequest]:
    return [
        EnqueueRequest({"action": "noop", "n": i, "name": "bench"}, SERVICE) for i in range(count)
    ]


async def measure(kind: str, count: int, batch: int, directory: Path) -> dict[str, Any]:
    """Jobs/s enqueued one per call, and in ``enqueue_many`` batches of ``batch``."""
    result: dict[str, Any] = {"queue": kind, "jobs": count, "batch": batch}
    single = make_queue(kind, directory, "single")
    await single.open()
    try:
        requests = _requests(count)
        started = time.perf_counter()
        for request in requests:
            await single.enqueue(request)
        result["single_jobs_per_s"] = count / (time.perf_counter() - started)
    finally:
        await single.close()
    batched = make_queue(kind, directory, "batched")
    await batched.open()
    try:
        requests = _requests(count)
        started = time.perf_counter()
        for i in range(0, count, batch):
            await batched.enqueue_many(requests[i : i + batch])
        result["batched_jobs_per_s"] = count / (time.perf_counter() - started)
    finally:
        await batched.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queues", nargs="+", choices=["memory", "sqlite"])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per in-memory run")
    parser.add_argument("--sqlite-jobs", type=int, default=2_000, help="jobs per SQLite run")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    for kind in args.queues:
        count = args.jobs if kind == "memory" else args.sqlite_jobs
        with tempfile.TemporaryDirectory(prefix="usvc-bench-") as tmp:
            try:
                result = asyncio.run(measure(kind, count, args.batch, Path(tmp)))
            except UsvcError as exc:  # e.g. the adapter is not available in this checkout
                result = {"queue": kind, "unavailable": str(exc)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
