"""usvc-postgres against Procrastinate on the same PostgreSQL server, in the same run:
drain (a backlog of no-op jobs run to completion by one worker) and enqueue (one job per
call, from concurrent producers; and batches).

Durable on both sides: the server runs with ``fsync`` and ``synchronous_commit`` on; a
usvc job counts as done once its outcome is committed (the worker awaits the commit),
Procrastinate's once its finish function returned.

    bash scripts/dev.sh uv run --frozen --group bench python bench/postgres_drain.py
    ... --url postgresql://user@host/db   # an existing server (default: start one)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from typing import Any

import structlog
from postgres_server import postgres
from pydantic import BaseModel
from usvc_core import ActionRegistry, EnqueueRequest, JobStatus, Worker, WorkerConfig
from usvc_core.actions import action
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url

# One log line per job would cost more than the job (Procrastinate logs nothing at INFO
# unless configured): warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


class _In(BaseModel):
    n: int


@action("noop")
async def _noop(input: _In) -> dict[str, int]:
    return {"n": input.n}


async def usvc_drain(url: str, jobs: int, concurrency: int) -> float:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    queue = PostgresQueue(
        **parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_POOL_SIZE=concurrency
    )
    await queue.open()
    try:
        for start in range(0, jobs, 1000):
            await queue.enqueue_many(
                [
                    EnqueueRequest({"action": "noop", "n": n}, "bench")
                    for n in range(start, min(jobs, start + 1000))
                ]
            )
        registry = ActionRegistry()
        registry.add(_noop)
        worker = Worker(
            queue,
            registry,
            WorkerConfig(
                microservice="bench",
                max_concurrent=concurrency,
                polling_interval=0.2,
                stats_interval=3600,
            ),
        )
        began = time.perf_counter()
        task = asyncio.create_task(worker.run())
        while (await queue.stats("bench")).counts[JobStatus.COMPLETED] < jobs:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        worker.request_stop()
        await task
        return jobs / elapsed
    finally:
        await queue.close()


async def usvc_enqueue(url: str, jobs: int, producers: int, batch: int) -> float:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    queue = PostgresQueue(**parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_POOL_SIZE=16)
    await queue.open()
    try:
        per = jobs // producers

        async def produce() -> None:
            if batch == 1:
                for n in range(per):
                    await queue.enqueue(EnqueueRequest({"action": "noop", "n": n}, "bench"))
            else:
                for start in range(0, per, batch):
                    await queue.enqueue_many(
                        [
                            EnqueueRequest({"action": "noop", "n": n}, "bench")
                            for n in range(start, min(per, start + batch))
                        ]
                    )

        began = time.perf_counter()
        await asyncio.gather(*(produce() for _ in range(producers)))
        return per * producers / (time.perf_counter() - began)
    finally:
        await queue.close()


async def procrastinate_case(
    url: str, jobs: int, concurrency: int, producers: int
) -> dict[str, float]:
    import procrastinate

    database = f"procrastinate_{uuid.uuid4().hex[:8]}"
    import asyncpg

    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    base = url.rsplit("/", 1)[0]
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=f"{base}/{database}"))

    @app.task(name="noop")
    async def noop(n: int) -> int:
        return n

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        began = time.perf_counter()
        per = jobs // producers

        async def produce() -> None:
            for n in range(per):
                await noop.defer_async(n=n)

        await asyncio.gather(*(produce() for _ in range(producers)))
        enqueue = per * producers / (time.perf_counter() - began)
        began = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency,
            wait=False,
            listen_notify=False,
            install_signal_handlers=False,
            delete_jobs="never",
        )
        drain = per * producers / (time.perf_counter() - began)
    return {"drain": drain, "enqueue": enqueue}


async def main_async(url: str, jobs: int, peer_jobs: int, concurrency: int) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "concurrency": concurrency,
        "usvc_jobs": jobs,
        "peer_jobs": peer_jobs,
    }
    figures["usvc_drain"] = await usvc_drain(url, jobs, concurrency)
    figures["usvc_enqueue_one"] = await usvc_enqueue(url, min(jobs, 2000), 16, 1)
    figures["usvc_enqueue_batch100"] = await usvc_enqueue(url, jobs, 4, 100)
    peer = await procrastinate_case(url, peer_jobs, concurrency, 16)
    figures["procrastinate_drain"] = peer["drain"]
    figures["procrastinate_enqueue_one"] = peer["enqueue"]
    figures["drain_ratio"] = figures["usvc_drain"] / peer["drain"]
    figures["enqueue_one_ratio"] = figures["usvc_enqueue_one"] / peer["enqueue"]
    for key, value in figures.items():
        if isinstance(value, float):
            figures[key] = round(value, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start a temporary one)")
    parser.add_argument("--jobs", type=int, default=10000, help="usvc jobs per case")
    parser.add_argument("--peer-jobs", type=int, default=1000, help="Procrastinate jobs")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    def run(url: str) -> None:
        figures = asyncio.run(main_async(url, args.jobs, args.peer_jobs, args.concurrency))
        print(json.dumps(figures, indent=1))

    with postgres(args.url) as server:
        run(server.url)


if __name__ == "__main__":
    main()
