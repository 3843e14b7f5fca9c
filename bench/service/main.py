"""The benchmark service: the example service's stack (``Application().run()``) with one
no-op action.

With ``BENCH_PRELOAD_JOBS=N`` it enqueues N no-op jobs into its own queue as soon as it
listens, so the memory case can watch a process drain a full queue, and prints one JSON
line with the drain's duration once they are all Completed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from usvc_core import Application, EnqueueRequest, JobStatus


async def _serve_preloaded(count: int) -> None:
    app = Application()
    serving = asyncio.create_task(app.serve())
    # The queue is open and the worker built once the HTTP surface listens.
    while app.http_port is None:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.005)
    name = app.settings.MICROSERVICE_NAME
    jobs = await app.queue.enqueue_many(
        [EnqueueRequest({"action": "noop", "n": i, "name": "bench"}, name) for i in range(count)]
    )
    began = time.perf_counter()
    await app.wait_for_job(jobs[-1].id, timeout=600)
    while (await app.queue.stats(name)).counts.get(JobStatus.COMPLETED, 0) < count:  # noqa: ASYNC110 - a short poll for the last batch
        await asyncio.sleep(0.005)
    drained = {"preloaded": count, "drain_seconds": time.perf_counter() - began}
    print(json.dumps(drained), flush=True)
    await serving


def main() -> None:
    count = int(os.environ.get("BENCH_PRELOAD_JOBS", "0"))
    if count > 0:
        asyncio.run(_serve_preloaded(count))
    else:
        Application().run()


if __name__ == "__main__":
    main()
