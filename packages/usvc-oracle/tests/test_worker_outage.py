"""The worker on OracleQueue through an outage of the database (recording fake driver)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from usvc_core import (
    ActionRegistry,
    EnqueueRequest,
    HealthRegistry,
    JobStatus,
    Status,
    Worker,
    WorkerConfig,
    action,
)
from usvc_core.worker import QUEUE_CHECK
from usvc_oracle import OracleQueue, OracleSettings
from usvc_oracle_fake import FakeDatabase, FakePool, connection_lost

gate: asyncio.Event


class In(BaseModel):
    n: int


@action("gated")
async def gated(input: In) -> dict[str, int]:
    await gate.wait()
    return {"n": input.n}


async def until(pred: Callable[[], Any], limit: float = 20.0) -> None:
    async with asyncio.timeout(limit):
        while not pred():  # noqa: ASYNC110 - polling state another task changes
            await asyncio.sleep(0.01)


async def test_worker_survives_an_oracle_outage_and_writes_the_result_later() -> None:
    """Connections fail for a while: health goes RED with the reason, the worker keeps its
    result, writes it once the database is back, and health returns to GREEN."""
    global gate
    gate = asyncio.Event()
    db = FakeDatabase()
    settings = OracleSettings(
        ORACLE_USER="app",
        ORACLE_PASSWORD="secret",
        ORACLE_RETRIES=1,
        ORACLE_RETRY_BACKOFF_SECONDS=0.01,
    )
    queue = OracleQueue(settings, pool_factory=lambda s: FakePool(db))
    await queue.open()
    registry = ActionRegistry()
    registry.add(gated)
    health = HealthRegistry()
    worker = Worker(
        queue,
        registry,
        WorkerConfig(microservice="svc", polling_interval=0.05, lease_seconds=30),
        health=health,
    )
    task = asyncio.create_task(worker.run())
    try:
        job = await queue.enqueue(EnqueueRequest({"action": "gated", "n": 7}, "svc"))
        await until(lambda: worker.active_jobs == 1 and db.status(job.id) == "Processing")

        db.fail("acquire", connection_lost, times=10**9)  # the database goes away
        gate.set()  # the handler finishes during the outage
        await until(lambda: health.get(QUEUE_CHECK).status is Status.RED)  # type: ignore[union-attr]
        check = health.get(QUEUE_CHECK)
        assert check is not None
        assert check.details["last_poll"] == "error"
        assert "DPY-4011" in check.details["error"] or "unavailable" in check.details["error"]
        assert db.status(job.id) == "Processing"  # not written yet, but not lost either
        assert not task.done()

        db.faults.clear()  # the database is back
        await until(lambda: db.status(job.id) == "Completed")
        await until(lambda: health.get(QUEUE_CHECK).status is Status.GREEN)  # type: ignore[union-attr]
        stored = await queue.get(job.id)
        assert stored is not None
        assert stored.status is JobStatus.COMPLETED and stored.results == {"n": 7}
        assert stored.attempts == 1
    finally:
        worker.request_stop()
        worker.request_stop()
        await asyncio.wait_for(task, 20)
        await queue.close()
