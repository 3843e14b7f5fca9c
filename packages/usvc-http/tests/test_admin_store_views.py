"""What the store learned, through the admin API over a real socket on a real SQLite queue:
the scheduled view and count, the attempt history, the new filters and the lookup by key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_core import Application, WorkerSettings

TOKEN = "store-views-admin-token-0123456789abcdef"
SERVICE = "store-views"

HANDLER = """
from pydantic import BaseModel
from usvc_core import action

class In(BaseModel):
    name: str

@action("flaky", retry_on=(ValueError,))
async def flaky(input: In) -> dict:
    raise ValueError(f"upstream refused {input.name}")
"""


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    (tmp_path / "actions" / "flaky").mkdir(parents=True)
    (tmp_path / "actions" / "flaky" / "handler.py").write_text(HANDLER)
    settings = WorkerSettings(
        _env_file=None,
        MICROSERVICE_NAME=SERVICE,
        QUEUE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=0,
        POLLING_INTERVAL_SECONDS=0.05,
        SHUTDOWN_TIMEOUT_SECONDS=0.5,
        JOB_RETRY_BACKOFF_SECONDS=0,
        ADMIN_TOKEN=TOKEN,
    )
    app = Application(tmp_path / "actions", settings=settings, configure_logging=False)
    await app.start()
    try:
        yield f"http://127.0.0.1:{app.http_port}"
    finally:
        await app.stop()


async def _until_failed(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            job: dict[str, Any] = (await c.get(f"/admin/api/jobs/{job_id}")).json()
            if job["status"] == "Failed":
                return job
            await asyncio.sleep(0.05)


async def test_scheduled_jobs_attempts_filters_and_lookup(url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as c:
        later = (
            await c.post(
                "/admin/api/jobs",
                json={
                    "payload": {"action": "flaky", "name": "later"},
                    "delay_seconds": 3600,
                    "idempotency_key": "order-7",
                },
            )
        ).json()
        assert later["scheduled"] is True
        shown = (await c.get(f"/admin/api/jobs/{later['id']}")).json()
        assert (shown["status"], shown["scheduled"]) == ("Ready", True)
        assert shown["run_at"] is not None
        assert shown["idempotency_key"] == "order-7"
        stats = (await c.get("/admin/api/stats")).json()
        assert (stats["counts"]["Ready"], stats["scheduled"]) == (1, 1)
        assert stats["oldest_ready_age_seconds"] is None  # nothing due is waiting
        assert [a["scheduled"] for a in stats["actions"]] == [1]
        listed = (await c.get("/admin/api/jobs", params={"scheduled": "true"})).json()
        assert [j["id"] for j in listed["jobs"]] == [later["id"]]
        found = (await c.get("/admin/api/find", params={"key": "order-7"})).json()
        assert [j["id"] for j in found["jobs"]] == [later["id"]]

        now = (
            await c.post(
                "/admin/api/jobs",
                json={"payload": {"action": "flaky", "name": "db"}, "max_attempts": 2},
            )
        ).json()
        failed = await _until_failed(c, now["id"])
        history = failed["attempt_history"]
        assert [a["number"] for a in history] == [1, 2]
        assert [a["outcome"] for a in history] == ["retried", "failed"]
        assert all(a["worker_id"] and a["started_at"] and a["finished_at"] for a in history)
        assert all("refused db" in a["error_message"] for a in history)
        by_text = (await c.get("/admin/api/jobs", params={"error_text": "REFUSED DB"})).json()
        assert [j["id"] for j in by_text["jobs"]] == [now["id"]]


def test_metrics_report_scheduled_jobs_apart_from_waiting_ones() -> None:
    """``queue_oldest_ready_age_seconds`` is what the store says of due jobs (0 when only
    scheduled ones wait); ``queue_scheduled_jobs`` counts the scheduled ones."""
    from prometheus_client import generate_latest
    from usvc_core.jobs import JobStatus
    from usvc_core.ports import QueueStats
    from usvc_http.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    metrics.queue_stats(QueueStats({JobStatus.READY: 3}, None, scheduled=3))
    text = generate_latest(metrics.registry).decode()
    assert "queue_oldest_ready_age_seconds 0.0" in text
    assert "queue_scheduled_jobs 3.0" in text
