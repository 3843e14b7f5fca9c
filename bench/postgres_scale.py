"""Scale-out on usvc-postgres: 1, 2, 4 and 8 worker processes drain one backlog of no-op
jobs (20,000 by default) from one PostgreSQL server. Each process runs the worker engine
with ``--concurrency`` slots; the clock starts when every process is connected and told
to go, and stops when the last job is Completed.

    bash scripts/dev.sh uv run --frozen python bench/postgres_scale.py [--jobs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from postgres_server import postgres
from usvc_core import EnqueueRequest, JobStatus
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url

WORKER = """
import asyncio, logging, sys
import structlog
from pydantic import BaseModel
from usvc_core import ActionRegistry, Worker, WorkerConfig
from usvc_core.actions import action
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url

class In(BaseModel):
    n: int

@action("noop")
async def noop(input: In) -> dict[str, int]:
    return {"n": input.n}

# One log line per job would cost more than the job: warnings only, to stderr.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                    logger_factory=structlog.PrintLoggerFactory(sys.stderr))

async def main() -> None:
    url, table, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    queue = PostgresQueue(**parse_postgres_url(url), POSTGRES_TABLE=table,
                          POSTGRES_POOL_SIZE=concurrency, POSTGRES_LISTEN="off")
    await queue.open()
    registry = ActionRegistry()
    registry.add(noop)
    worker = Worker(queue, registry, WorkerConfig(microservice="scale",
                    max_concurrent=concurrency, polling_interval=0.1, stats_interval=3600))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    task = asyncio.create_task(worker.run())
    await asyncio.to_thread(sys.stdin.readline)
    worker.request_stop()
    await task
    await queue.close()

asyncio.run(main())
"""


async def run(url: str, processes: int, jobs: int, concurrency: int) -> dict[str, Any]:
    table = f"scale_{uuid.uuid4().hex[:8]}"
    queue = PostgresQueue(**parse_postgres_url(url), POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
    await queue.open()
    try:
        for start in range(0, jobs, 2000):
            await queue.enqueue_many(
                [
                    EnqueueRequest({"action": "noop", "n": n}, "scale")
                    for n in range(start, min(jobs, start + 2000))
                ]
            )
        workers = [
            subprocess.Popen(  # noqa: ASYNC220 (started before the clock runs)
                [sys.executable, "-c", WORKER, url, table, str(concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        for w in workers:
            assert w.stdout is not None
            assert (await asyncio.to_thread(w.stdout.readline)).strip() == b"ready"
        began = time.perf_counter()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(b"go\n")
            w.stdin.flush()
        while (await queue.stats("scale")).counts[JobStatus.COMPLETED] < jobs:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        for w in workers:
            assert w.stdin is not None
            w.stdin.write(b"stop\n")
            w.stdin.flush()
        for w in workers:
            w.wait(60)
            for stream in (w.stdin, w.stdout):
                if stream is not None:
                    stream.close()
        return {
            "processes": processes,
            "jobs_per_s": round(jobs / elapsed, 1),
            "seconds": round(elapsed, 2),
            "load_1min": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
    finally:
        await queue.close()


async def main_async(url: str, counts: list[int], jobs: int, concurrency: int) -> list[Any]:
    return [await run(url, n, jobs, concurrency) for n in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start a temporary one)")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]

    def go(url: str) -> None:
        for row in asyncio.run(main_async(url, counts, args.jobs, args.concurrency)):
            print(json.dumps(row))

    with postgres(args.url) as server:
        go(server.url)


if __name__ == "__main__":
    main()
