"""Enqueue -> start latency on usvc-postgres: LISTEN/NOTIFY wake-up against polling alone.

A worker (its own PostgresQueue, as another process would have) waits on an empty queue;
a producer (another PostgresQueue) enqueues one job every 50 ms. Latency is the job's
``started_at - created_at``, both read from the server's clock (no skew between clocks).

    bash scripts/dev.sh uv run --frozen python bench/postgres_notify.py [--jobs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "usvc-postgres" / "tests"))

import structlog  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from usvc_core import ActionRegistry, EnqueueRequest, Worker, WorkerConfig  # noqa: E402
from usvc_core.actions import action  # noqa: E402
from usvc_postgres import PostgresQueue  # noqa: E402
from usvc_postgres.settings import parse_postgres_url  # noqa: E402

# One log line per job would cost more than the job (Procrastinate logs nothing at INFO
# unless configured): warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


class _In(BaseModel):
    n: int


@action("noop")
async def _noop(input: _In) -> dict[str, int]:
    return {"n": input.n}


async def latencies(url: str, listen: str, jobs: int, polling: float) -> list[float]:
    table = f"notify_{uuid.uuid4().hex[:8]}"
    worker_queue = PostgresQueue(
        **parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_LISTEN=listen
    )
    producer = PostgresQueue(**parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
    await worker_queue.open()
    await producer.open()
    registry = ActionRegistry()
    registry.add(_noop)
    worker = Worker(
        worker_queue,
        registry,
        WorkerConfig(microservice="bench", polling_interval=polling, stats_interval=3600),
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        ids = []
        for n in range(jobs):
            job = await producer.enqueue(EnqueueRequest({"action": "noop", "n": n}, "bench"))
            ids.append(job.id)
            await asyncio.sleep(0.05)
        result = []
        for job_id in ids:
            while True:
                job = await producer.get(job_id)
                assert job is not None
                if job.started_at is not None and job.finished_at is not None:
                    break
                await asyncio.sleep(0.05)
            assert job.created_at is not None
            result.append((job.started_at - job.created_at).total_seconds() * 1000)
        return result
    finally:
        worker.request_stop()
        await task
        await worker_queue.close()
        await producer.close()


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2)}


async def main_async(url: str, jobs: int, polling: float) -> dict[str, Any]:
    return {
        "polling_interval_s": polling,
        "jobs": jobs,
        "notify": _summary(await latencies(url, "on", jobs, polling)),
        "polling": _summary(await latencies(url, "off", jobs, polling)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start a temporary one)")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--polling", type=float, default=1.0, help="POLLING_INTERVAL_SECONDS")
    args = parser.parse_args()
    if args.url:
        print(json.dumps(asyncio.run(main_async(args.url, args.jobs, args.polling)), indent=1))
        return
    from pgserver import PgServer

    server = PgServer()
    try:
        server.init()
        server.start()
        print(json.dumps(asyncio.run(main_async(server.url, args.jobs, args.polling)), indent=1))
    finally:
        server.remove()


if __name__ == "__main__":
    main()
