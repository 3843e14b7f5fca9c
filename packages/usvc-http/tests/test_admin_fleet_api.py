"""The admin API's fleet routes over a real socket on a real SQLite queue: the worker
records, and pausing an action across the fleet (its jobs wait Ready, health says why)
until it is resumed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_core import Application, WorkerSettings

TOKEN = "fleet-admin-token-0123456789-abcdefghijklmnop"
SERVICE = "fleet-svc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

HANDLER = """
from usvc_core import action

@action("greet")
async def greet() -> dict:
    return {"message": "hello"}
"""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Application, str]]:
    (tmp_path / "actions" / "greet").mkdir(parents=True)
    (tmp_path / "actions" / "greet" / "handler.py").write_text(HANDLER)
    settings = WorkerSettings(
        _env_file=None,
        MICROSERVICE_NAME=SERVICE,
        QUEUE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=0,
        POLLING_INTERVAL_SECONDS=0.05,
        SHUTDOWN_TIMEOUT_SECONDS=0.5,
        WORKER_HEARTBEAT_SECONDS=1.0,
        SERVICE_VERSION="3.1.4",
        ADMIN_TOKEN=TOKEN,
    )
    app = Application(tmp_path / "actions", settings=settings, configure_logging=False)
    await app.start()
    try:
        yield app, f"http://127.0.0.1:{app.http_port}"
    finally:
        await app.stop()


async def until(check: Callable[[], Any], limit: float = 30.0) -> Any:
    async with asyncio.timeout(limit):
        while not (found := await check()):  # noqa: ASYNC110 - polls over HTTP, with a limit
            await asyncio.sleep(0.05)
    return found


async def test_workers_lists_the_process_from_its_heartbeat(
    served: tuple[Application, str],
) -> None:
    app, url = served
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as c:

        async def listed() -> list[dict[str, Any]]:
            workers: list[dict[str, Any]] = (await c.get("/admin/api/workers")).json()["workers"]
            return workers

        [worker] = await until(listed)
        assert worker["worker_id"] == app.worker.worker_id
        assert (worker["pid"], worker["version"], worker["gone"]) == (app.pid, "3.1.4", False)
        assert (worker["actions"], worker["heartbeat_seconds"]) == (["greet"], 1.0)
        assert worker["last_seen_at"] is not None
    async with httpx.AsyncClient(base_url=url) as anonymous:
        assert (await anonymous.get("/admin/api/workers")).status_code == 401


async def test_a_paused_action_waits_until_resumed_and_health_says_why(
    served: tuple[Application, str],
) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        paused = (await c.post("/admin/api/actions/greet/pause")).json()
        assert paused == {"action": "greet", "paused": True, "changed": True}
        again = (await c.post("/admin/api/actions/greet/pause")).json()
        assert again["changed"] is False
        job = (await c.post("/admin/api/jobs", json={"payload": {"action": "greet"}})).json()

        # The paused_actions check itself, not the aggregate: on a loaded machine another
        # check (event_loop lag) may turn the aggregate YELLOW before or after this one.
        async def paused_check(status: str) -> dict[str, Any] | None:
            body: dict[str, Any] = (await c.get("/health")).json()
            check = body["checks"].get("paused_actions")
            return body if check is not None and check["status"] == status else None

        health = await until(lambda: paused_check("YELLOW"))
        assert health["status"] != "GREEN"  # the aggregate is at least as bad as any check
        check = health["checks"]["paused_actions"]
        assert check["details"]["paused"] == ["greet"]
        assert "greet" in check["details"]["reason"]
        [greet] = (await c.get("/admin/api/actions")).json()["actions"]
        assert (greet["action"], greet["paused"], greet["registered"]) == ("greet", True, True)
        assert (greet["ready"], greet["running"]) == (1, 0)
        assert greet["paused_at"] is not None
        assert (await c.get(f"/admin/api/jobs/{job['id']}")).json()["status"] == "Ready"
        assert (await c.get("/admin/api/stats")).json()["paused_actions"] == ["greet"]

        resumed = (await c.post("/admin/api/actions/greet/resume")).json()
        assert resumed == {"action": "greet", "paused": False, "changed": True}

        async def completed() -> bool:
            got = (await c.get(f"/admin/api/jobs/{job['id']}")).json()
            return bool(got["status"] == "Completed")

        await until(completed)

        health = await until(lambda: paused_check("GREEN"))
        assert health["checks"]["paused_actions"]["details"]["paused"] == []
        [greet] = (await c.get("/admin/api/actions")).json()["actions"]
        assert (greet["paused"], greet["paused_at"]) == (False, None)
