"""MongoDB failures: RED after 3 failed publishes, GREEN again by itself, and the worker
processing jobs all along. Faults: a failCommand fail point, and a killed server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure
from usvc_core import Application
from usvc_core.health import Status
from usvc_core.jobs import JobStatus
from usvc_mongo import MongoServiceRegistry, RegistrySurface, registry_surface
from usvc_mongo.surface import REGISTRY_CHECK

MakeApp = Callable[..., Application]

_CRUD = ["update", "findAndModify", "insert", "delete", "find", "listIndexes", "createIndexes"]


def status(app: Application) -> Status | None:
    check = app.health.get(REGISTRY_CHECK)
    return check.status if check is not None else None


@pytest.fixture
async def admin(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000
    )
    yield client
    await client.close()


async def fail_point(admin: AsyncMongoClient[dict[str, Any]], mode: Any, app_name: str) -> None:
    try:
        await admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": mode,
                "data": {"failCommands": _CRUD, "closeConnection": True, "appName": app_name},
            }
        )
    except OperationFailure as exc:
        pytest.skip(f"the server refuses configureFailPoint (needs enableTestCommands=1): {exc}")


async def test_fail_point_turns_red_after_three_failed_publishes(
    make_app: MakeApp, mongo_uri: str, db_name: str, admin: AsyncMongoClient[dict[str, Any]]
) -> None:
    """alwaysOn closeConnection: YELLOW, YELLOW, RED; switched off: GREEN at the next beat."""
    app = make_app()
    app_name = f"usvc-test-{uuid.uuid4().hex[:8]}"  # scopes the fail point to this client
    registry = MongoServiceRegistry(mongo_uri, db_name, timeout_seconds=1.0, app_name=app_name)
    surface = RegistrySurface(
        app.surface_context(), registry, heartbeat_seconds=3600, stop_timeout_seconds=5
    )
    try:
        assert await surface.beat()
        assert status(app) is Status.GREEN
        await fail_point(admin, "alwaysOn", app_name)
        try:
            seen = []
            for _ in range(3):
                assert not await surface.beat()
                seen.append(status(app))
            assert seen == [Status.YELLOW, Status.YELLOW, Status.RED]
        finally:
            await fail_point(admin, "off", app_name)
        assert await surface.beat()
        assert status(app) is Status.GREEN
    finally:
        await surface.stop()
    assert await admin[db_name].service_instances.count_documents({}) == 0  # deregistered


@pytest.mark.slow
async def test_killed_server_turns_red_and_its_return_turns_green(
    make_app: MakeApp, own_server: Any, db_name: str
) -> None:
    """A crashed MongoDB: three failed beats make RED; after the restart the registry
    reconnects by itself, re-publishes what the crash lost, and is GREEN."""
    app = make_app()
    registry = MongoServiceRegistry(own_server.uri, db_name, timeout_seconds=1.0)
    surface = RegistrySurface(
        app.surface_context(), registry, heartbeat_seconds=3600, stop_timeout_seconds=5
    )
    try:
        assert await surface.beat()
        own_server.kill()
        assert [await surface.beat() for _ in range(3)] == [False, False, False]
        assert status(app) is Status.RED
        check = app.health.get(REGISTRY_CHECK)
        assert check is not None
        assert check.details["consecutive_failures"] == 3

        own_server.start()  # same port, empty (in-memory) database
        async with asyncio.timeout(60):
            while True:  # the driver rediscovers the server by itself
                if await surface.beat():
                    break
                await asyncio.sleep(0.2)
        assert status(app) is Status.GREEN
        [me] = await registry.live_instances("echo-service")
        assert me.instance_id == app.instance_id
        schemas = await registry.schemas("echo-service", "2.1.0")
        assert schemas is not None
        assert [a.name for a in schemas.actions] == ["echo"]
    finally:
        await surface.stop()


@pytest.mark.slow
async def test_the_worker_keeps_processing_jobs_while_the_registry_is_down(
    make_app: MakeApp, own_server: Any, db_name: str, wait_for_status: Any
) -> None:
    """With MongoDB dead the check goes RED, jobs still complete, and shutdown is not held."""

    app = make_app(
        surfaces=[partial(registry_surface, timeout_seconds=1.0)],
        MONGODB_URI=SecretStr(own_server.uri),
        MONGODB_DATABASE=db_name,
        MONGODB_HEARTBEAT_SECONDS=0.2,
        MONGODB_KEY_TTL_SECONDS=5,
        POLLING_INTERVAL_SECONDS=0.1,
    )
    async with asyncio.timeout(120):  # bounds start, the whole run and the shutdown
        async with app:
            await wait_for_status(app, Status.GREEN)
            own_server.kill()
            await wait_for_status(app, Status.RED)
            jobs = [await app.enqueue({"action": "echo", "text": f"t{i}"}) for i in range(5)]
            done = [await app.wait_for_job(job.id, timeout=30) for job in jobs]
            assert [j.status if j else None for j in done] == [JobStatus.COMPLETED] * 5
            assert [j.results for j in done if j] == [{"text": f"t{i}"} for i in range(5)]
            assert status(app) is Status.RED
            queue_check = app.health.get("job_queue")
            assert queue_check is not None
            assert queue_check.status is Status.GREEN


async def test_a_stopped_server_shows_within_a_few_heartbeats(
    make_app: MakeApp, own_server: Any, db_name: str, wait_for_status: Any
) -> None:
    """MONGODB_HEARTBEAT_SECONDS=1, the entry point's own timeouts: once the server is
    stopped the check leaves GREEN and reaches RED through YELLOW, each operation bounded
    by the heartbeat interval (not the driver's default 10 s, which kept /health GREEN for
    10 s and turned it RED after 32 s)."""
    app = make_app(
        surfaces=[registry_surface],  # the entry point as installed, default timeouts
        MONGODB_URI=SecretStr(own_server.uri),
        MONGODB_DATABASE=db_name,
        MONGODB_HEARTBEAT_SECONDS=1,
        MONGODB_KEY_TTL_SECONDS=5,
    )
    seen: list[Status] = []

    def record(health: Any) -> None:
        current = status(app)
        if current is not None and (not seen or seen[-1] is not current):
            seen.append(current)

    app.health.subscribe(record)
    async with asyncio.timeout(90):
        async with app:
            await wait_for_status(app, Status.GREEN)
            [surface] = [s for s in app._surfaces if isinstance(s, RegistrySurface)]
            registry = surface.registry
            assert isinstance(registry, MongoServiceRegistry)
            assert registry.timeout_seconds <= 1
            own_server.stop()
            # 3 failed heartbeats of at most ~1 s each, 1 s apart; the bound is generous.
            await wait_for_status(app, Status.RED, seconds=25)
            assert seen[-3:] == [Status.GREEN, Status.YELLOW, Status.RED]
            assert surface.failures_total >= 1
