"""The greeting example on PostgreSQL, as a user runs it: ``QUEUE_URL=postgresql://...``
and nothing else changed. A job enqueued by another process is woken by LISTEN/NOTIFY,
run by the service and recorded Completed; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest
from pgserver import PgServer
from usvc_core import EnqueueRequest, JobStatus
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url

from tests.conftest import ROOT, ServiceProcess

pytestmark = pytest.mark.slow


async def test_the_greeting_example_runs_on_postgres(pg_server: PgServer) -> None:
    table = f"example_{uuid.uuid4().hex[:8]}"
    svc = ServiceProcess(
        ROOT / "examples" / "greeting",
        {
            "MICROSERVICE_NAME": "greeting-service",
            "DEV_MODE": "False",
            "QUEUE_URL": f"{pg_server.url}?table={table}",
            "POLLING_INTERVAL_SECONDS": "30",  # only a notification can start it quickly
            "LOG_CONSOLE_JSON": "True",
        },
    )
    try:
        await asyncio.to_thread(svc.wait_healthy, 60)
        queue = PostgresQueue(**parse_postgres_url(pg_server.url), POSTGRES_TABLE=table)
        await queue.open()
        try:
            job = await queue.enqueue(
                EnqueueRequest({"action": "greet", "name": "PostgreSQL"}, "greeting-service")
            )
            async with asyncio.timeout(20):  # far below the 30 s polling interval
                while True:
                    stored = await queue.get(job.id)
                    assert stored is not None
                    if stored.status.is_finished:
                        break
                    await asyncio.sleep(0.05)
        finally:
            await queue.close()
        assert stored.status is JobStatus.COMPLETED, stored
        assert stored.results == {"message": "Hello, PostgreSQL!"}
        svc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(svc.wait, 30) == 0, svc.output()
    finally:
        svc.stop()
