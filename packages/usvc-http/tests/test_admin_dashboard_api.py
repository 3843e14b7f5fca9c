"""The admin API's dashboard routes over a real socket on a real SQLite queue: counting
what a filter matches, bulk retry and cancel (selection and filter), the light job read,
schedules with their slots, and action runtimes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_core import Application, WorkerSettings

TOKEN = "dash-admin-token-0123456789-abcdefghijklmnop"
SERVICE = "dash-svc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

HANDLERS = {
    "greet": """
from usvc_core import action

@action("greet")
async def greet() -> dict:
    return {"message": "hello"}
""",
    "boom": """
from usvc_core import action

@action("boom", max_attempts=1)
async def boom() -> dict:
    raise RuntimeError("the provider is down")
""",
    "tick": """
from usvc_core import action

@action("tick", schedule="* * * * * *")
async def tick() -> dict:
    return {}
""",
}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    for name, source in HANDLERS.items():
        (tmp_path / "actions" / name).mkdir(parents=True)
        (tmp_path / "actions" / name / "handler.py").write_text(source)
    settings = WorkerSettings(
        _env_file=None,
        MICROSERVICE_NAME=SERVICE,
        QUEUE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=0,
        POLLING_INTERVAL_SECONDS=0.05,
        SHUTDOWN_TIMEOUT_SECONDS=0.5,
        ADMIN_TOKEN=TOKEN,
    )
    app = Application(tmp_path / "actions", settings=settings, configure_logging=False)
    await app.start()
    try:
        yield f"http://127.0.0.1:{app.http_port}"
    finally:
        await app.stop()


async def until(check: Callable[[], Any], limit: float = 15.0) -> Any:
    async with asyncio.timeout(limit):
        while not (found := await check()):  # noqa: ASYNC110 - polls over HTTP, with a limit
            await asyncio.sleep(0.05)
    return found


async def test_count_then_bulk_retry_and_cancel(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, headers=AUTH) as c:
        failing = [
            (await c.post("/admin/api/jobs", json={"payload": {"action": "boom"}})).json()["id"]
            for _ in range(5)
        ]
        later = [
            (
                await c.post(
                    "/admin/api/jobs",
                    json={"payload": {"action": "greet"}, "delay_seconds": 3600},
                )
            ).json()["id"]
            for _ in range(3)
        ]

        async def all_failed() -> bool:
            r = await c.get("/admin/api/jobs/count", params={"status": "Failed", "action": "boom"})
            return bool(r.json() == {"count": 5, "capped": False})

        await until(all_failed)
        text = await c.get("/admin/api/jobs/count", params={"error_text": "PROVIDER IS"})
        assert text.json()["count"] == 5
        assert (await c.get("/admin/api/jobs/count?status=scheduled")).json()["count"] == 3

        # A selection: two of the failed ones (and a Ready one, which retry leaves alone).
        picked = await c.post(
            "/admin/api/jobs/bulk/retry", json={"ids": [failing[0], failing[1], later[0]]}
        )
        assert picked.json() == {
            "operation": "retry",
            "matched": 3,
            "touched": 2,
            "capped": False,
        }
        # Everything the filter matches: the scheduled ones are cancelled.
        cancelled = await c.post("/admin/api/jobs/bulk/cancel?status=scheduled")
        assert cancelled.json()["touched"] == 3
        for job_id in later:
            got = (await c.get(f"/admin/api/jobs/{job_id}")).json()
            assert (got["status"], got["error_code"]) == ("Failed", "CANCELLED")
        # The light read leaves the payload out.
        light = (await c.get(f"/admin/api/jobs/{later[0]}?payload=false")).json()
        assert (light["payload"], light["status"]) == (None, "Failed")
        full = (await c.get(f"/admin/api/jobs/{later[0]}")).json()
        assert full["payload"] == {"action": "greet"}

        # A session without the CSRF token cannot act in bulk; anonymous callers neither.
    async with httpx.AsyncClient(base_url=served) as anonymous:
        assert (await anonymous.post("/admin/api/jobs/bulk/retry")).status_code == 401
        assert (await anonymous.get("/admin/api/jobs/count")).status_code == 401


async def test_schedules_show_next_last_and_runtimes(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, headers=AUTH) as c:

        async def ran_twice() -> dict[str, Any] | None:
            [tick] = (await c.get("/admin/api/schedules")).json()["schedules"]
            done = [s for s in tick["recent_slots"] if s["status"] == "Completed"]
            return tick if len(done) >= 2 else None

        tick = await until(ran_twice)
        assert (tick["action"], tick["cron"], tick["timezone"]) == ("tick", "* * * * * *", "UTC")
        assert tick["last_run"]["job_id"] is not None
        assert tick["next_run"] > tick["last_run"]["slot"]
        # Slots before the service started have no job, and are not counted as missed:
        # they come before the first run in view.
        oldest = tick["recent_slots"][-1]
        assert (oldest["job_id"], oldest["missed"]) == (None, False)
        assert tick["missed"] == 0

        await c.post("/admin/api/jobs", json={"payload": {"action": "boom"}})

        async def measured() -> dict[str, Any] | None:
            rows = (await c.get("/admin/api/actions/runtime")).json()["actions"]
            by_name = {r["action"]: r for r in rows}
            ok = by_name["tick"]["p50_ms"] is not None and by_name["boom"]["failed"] == 1
            return by_name if ok else None

        by_name = await until(measured)
        assert by_name["boom"]["failure_rate"] == 1.0
        assert by_name["tick"]["failure_rate"] == 0.0
        assert by_name["tick"]["p95_ms"] >= by_name["tick"]["p50_ms"]
        assert by_name["tick"]["points"]


async def test_bulk_and_count_refuse_what_they_cannot_do(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, headers=AUTH) as c:
        too_many = await c.post("/admin/api/jobs/bulk/retry", json={"ids": ["1"] * 1001})
        assert too_many.status_code == 422
        assert (await c.get("/admin/api/jobs/count?status=Done")).status_code == 422
        naive = await c.post("/admin/api/jobs/bulk/cancel?created_after=2026-01-01T00:00:00")
        assert naive.status_code == 422
        # An id no job has touches nothing.
        none = await c.post("/admin/api/jobs/bulk/cancel", json={"ids": ["999999"]})
        assert none.json() == {"operation": "cancel", "matched": 0, "touched": 0, "capped": False}
    async with httpx.AsyncClient(base_url=served) as browser:
        signed_in = await browser.post("/admin/login", data={"token": TOKEN})
        assert signed_in.status_code == 303
        # The session's cookie alone does not act: the CSRF token is missing.
        assert (await browser.post("/admin/api/jobs/bulk/retry")).status_code == 403
