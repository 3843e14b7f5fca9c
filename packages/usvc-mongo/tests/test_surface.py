"""The registry surface against a scripted registry: health transitions, bounded stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from usvc_core import Application
from usvc_core.errors import ConfigurationError
from usvc_core.health import Status
from usvc_core.ports import InstanceInfo, ServiceDescription
from usvc_mongo import MongoServiceRegistry, RegistrySurface, registry_surface
from usvc_mongo.surface import REGISTRY_CHECK
from usvc_testing import FakeClock

MakeApp = Callable[..., Application]


class ScriptedRegistry:
    """Records calls; fails the next ``fail_next`` calls, or hangs while ``hang`` is set."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.descriptions: list[ServiceDescription] = []
        self.instances: list[InstanceInfo] = []
        self.fail_next = 0
        self.hang = False
        self.closed = False

    async def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError(f"{name}: connection refused")

    async def publish_schemas(self, description: ServiceDescription) -> None:
        await self._call("publish")
        self.descriptions.append(description)

    async def heartbeat(self, instance: InstanceInfo) -> None:
        await self._call("heartbeat")
        self.instances.append(instance)

    async def deregister(self, instance_id: str) -> None:
        self.calls.append(f"deregister:{instance_id}")

    async def close(self) -> None:
        self.closed = True


def make_surface(app: Application, registry: ScriptedRegistry, **options: Any) -> RegistrySurface:
    options.setdefault("heartbeat_seconds", 3600.0)
    return RegistrySurface(app.surface_context(), registry, **options)


async def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def status(app: Application) -> Status | None:
    check = app.health.get(REGISTRY_CHECK)
    return check.status if check is not None else None


async def test_first_beat_publishes_then_only_heartbeats(make_app: MakeApp) -> None:
    """The schemas go out once, before the first heartbeat; later beats only heartbeat."""
    app, registry = make_app(), ScriptedRegistry()
    surface = make_surface(app, registry)
    assert await surface.beat()
    assert await surface.beat()
    assert registry.calls == ["publish", "heartbeat", "heartbeat"]
    [description] = registry.descriptions
    assert (description.service, description.version) == ("echo-service", "2.1.0")
    [schema] = description.actions
    assert schema.name == "echo"
    assert schema.input_schema["properties"]["text"]["type"] == "string"
    assert status(app) is Status.GREEN


async def test_red_after_three_consecutive_failures_and_green_after_a_success(
    make_app: MakeApp,
) -> None:
    """1-2 failures: YELLOW; the third: RED; the next success: GREEN with the count reset."""
    app, registry = make_app(), ScriptedRegistry()
    surface = make_surface(app, registry)
    assert await surface.beat()
    registry.fail_next = 3
    seen = []
    for _ in range(3):
        assert not await surface.beat()
        seen.append(status(app))
    assert seen == [Status.YELLOW, Status.YELLOW, Status.RED]
    check = app.health.get(REGISTRY_CHECK)
    assert check is not None
    assert check.details["consecutive_failures"] == 3
    assert "connection refused" in check.details["last_error"]
    assert await surface.beat()
    check = app.health.get(REGISTRY_CHECK)
    assert check is not None
    assert check.status is Status.GREEN
    assert check.details["consecutive_failures"] == 0
    assert "last_error" not in check.details


async def test_a_failed_publish_is_retried_before_any_heartbeat(make_app: MakeApp) -> None:
    """No heartbeat is sent until the schemas are published."""
    app, registry = make_app(), ScriptedRegistry()
    registry.fail_next = 1
    surface = make_surface(app, registry)
    assert not await surface.beat()
    assert await surface.beat()
    assert registry.calls == ["publish", "publish", "heartbeat"]


async def test_the_loop_goes_red_and_back_to_green_by_itself(make_app: MakeApp) -> None:
    """Started, the loop survives failures and the check returns to GREEN on its own."""
    app, registry = make_app(), ScriptedRegistry()
    registry.fail_next = 3
    seen: list[Status] = []
    app.health.subscribe(lambda h: seen.append(h.get(REGISTRY_CHECK).status))  # type: ignore[union-attr]
    surface = make_surface(app, registry, heartbeat_seconds=0.01)
    await surface.start()
    assert status(app) is Status.YELLOW  # nothing published yet
    try:
        await wait_until(lambda: status(app) is Status.GREEN)
    finally:
        await surface.stop()
    collapsed = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] is not s]
    assert collapsed[:3] == [Status.YELLOW, Status.RED, Status.GREEN]
    assert surface.failures_total == 3


async def test_stop_deregisters_and_closes_the_registry(make_app: MakeApp) -> None:
    """A graceful stop deletes this instance and closes the client."""
    app, registry = make_app(), ScriptedRegistry()
    surface = make_surface(app, registry)
    await surface.start()
    await wait_until(lambda: surface.successes > 0)
    await surface.stop()
    assert registry.calls[-1] == f"deregister:{app.instance_id}"
    assert registry.closed


async def test_stop_is_bounded_when_the_registry_hangs(make_app: MakeApp) -> None:
    """A registry that never answers cannot hold up the application's shutdown."""
    app, registry = make_app(), ScriptedRegistry()
    registry.hang = True
    surface = make_surface(app, registry, beat_timeout_seconds=60, stop_timeout_seconds=0.2)
    await surface.start()
    await wait_until(lambda: bool(registry.calls))
    async with asyncio.timeout(30):
        await surface.stop()  # would wait 60 s for the beat if stop were not bounded
    assert registry.calls == ["publish", f"deregister:{app.instance_id}"]
    assert registry.closed


async def test_a_hanging_beat_times_out_and_counts_as_a_failure(make_app: MakeApp) -> None:
    """The beat timeout turns a hung MongoDB into a failed publish, not a stuck loop."""
    app, registry = make_app(), ScriptedRegistry()
    registry.hang = True
    surface = make_surface(app, registry, beat_timeout_seconds=0.05)
    async with asyncio.timeout(30):
        assert not await surface.beat()
    check = app.health.get(REGISTRY_CHECK)
    assert check is not None
    assert check.details["last_error"] == "timed out"


async def test_the_instance_carries_identity_port_and_current_health(make_app: MakeApp) -> None:
    """Heartbeats carry the process identity, the HTTP port and every health check."""
    app, registry = make_app(), ScriptedRegistry()
    surface = make_surface(app, registry)
    app.health.register("database", Status.YELLOW, {"latency_ms": 12})
    first = surface.instance()
    assert first.port == 0  # no HTTP surface yet
    app.instance.http_port = 8123
    second = surface.instance()
    assert (second.instance_id, second.pid, second.host) == (app.instance_id, app.pid, app.host)
    assert (second.service, second.version, second.port) == ("echo-service", "2.1.0", 8123)
    assert second.started_at == app.started_at
    assert second.health is Status.YELLOW
    assert second.checks["database"] == {"status": "YELLOW", "details": {"latency_ms": 12}}


def test_the_entry_point_is_off_without_a_uri(make_app: MakeApp) -> None:
    """An empty MONGODB_URI disables the registry."""
    assert registry_surface(make_app().surface_context()) is None


def test_a_ttl_not_above_the_heartbeat_fails_startup(make_app: MakeApp) -> None:
    """Instances would expire between heartbeats: a configuration mistake."""
    app = make_app(
        MONGODB_URI=SecretStr("mongodb://127.0.0.1:1/"),
        MONGODB_HEARTBEAT_SECONDS=30,
        MONGODB_KEY_TTL_SECONDS=30,
    )
    with pytest.raises(ConfigurationError, match="MONGODB_KEY_TTL_SECONDS"):
        registry_surface(app.surface_context())


def test_an_unusable_uri_fails_startup_without_showing_the_password(make_app: MakeApp) -> None:
    """The message says what is wrong and hides the credentials."""
    app = make_app(MONGODB_URI=SecretStr("mongodb://bob:hunter2hunter2@db:99999/"))
    with pytest.raises(ConfigurationError, match="MONGODB_URI") as info:
        registry_surface(app.surface_context())
    assert "hunter2" not in str(info.value)


async def test_settings_reach_the_client(make_app: MakeApp) -> None:
    """Pool sizes, database and TTL come from the MONGODB_* settings."""
    app = make_app(
        MONGODB_URI=SecretStr("mongodb://bob:hunter2hunter2@127.0.0.1:1/"),
        MONGODB_DATABASE="fleet",
        MONGODB_MAX_POOL_SIZE=3,
        MONGODB_MIN_POOL_SIZE=0,
        MONGODB_KEY_TTL_SECONDS=45,
        MONGODB_HEARTBEAT_SECONDS=15,
    )
    surface = registry_surface(app.surface_context())
    assert surface is not None
    registry = surface.registry
    assert isinstance(registry, MongoServiceRegistry)
    try:
        pool = registry.database.client.options.pool_options
        assert (pool.max_pool_size, pool.min_pool_size) == (3, 0)
        assert registry.database.name == "fleet"
        assert registry.key_ttl_seconds == 45
        assert "hunter2" not in repr(registry)
        assert registry.redacted_uri == "mongodb://***@127.0.0.1:1/"
    finally:
        await registry.close()


async def test_the_loop_survives_a_health_listener_that_raises(make_app: MakeApp) -> None:
    """Nothing a heartbeat touches can end the loop: it beats on after an exception."""
    app, registry = make_app(), ScriptedRegistry()
    calls = {"n": 0}

    def flaky_listener(_: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the first GREEN update after start
            raise RuntimeError("metrics backend exploded")

    app.health.subscribe(flaky_listener)
    surface = make_surface(app, registry, heartbeat_seconds=0.01)
    await surface.start()
    try:
        await wait_until(lambda: registry.calls.count("heartbeat") >= 3)
    finally:
        await surface.stop()
    assert status(app) is Status.GREEN


async def test_a_hanging_heartbeat_turns_the_check_yellow_after_two_intervals(
    make_app: MakeApp,
) -> None:
    """A heartbeat that neither succeeds nor fails (MongoDB gone, the driver still waiting)
    does not leave the check GREEN: past two intervals since the last success it is YELLOW,
    while that heartbeat is still in flight."""
    app, registry, clock = make_app(), ScriptedRegistry(), FakeClock()
    surface = make_surface(
        app, registry, heartbeat_seconds=10.0, clock=clock, stop_timeout_seconds=0.2
    )
    await surface.start()
    try:
        await wait_until(lambda: status(app) is Status.GREEN)
        registry.hang = True

        def asleep() -> bool:  # the watchdog waits on the clock; the loop too, or it hangs
            hung = registry.calls.count("heartbeat") == 2
            return clock.sleepers == (1 if hung else 2)

        for _ in range(20):  # 20 s on the fake clock, one second at a time
            await wait_until(asleep)
            clock.advance(1)
            await asyncio.sleep(0)
        await wait_until(asleep)
        assert registry.calls.count("heartbeat") == 2  # the second one hangs
        assert status(app) is Status.GREEN  # exactly two intervals: not stale yet
        for _ in range(5):  # the watchdog looks every half interval
            clock.advance(1)
            await asyncio.sleep(0)
        await wait_until(lambda: status(app) is Status.YELLOW)
        assert surface.failures_total == 0  # nothing failed: the silence alone turned it
        check = app.health.get(REGISTRY_CHECK)
        assert check is not None
        assert "no successful heartbeat for 25.0 s" in check.details["last_error"]
        registry.hang = False
        assert await surface.beat()
        assert status(app) is Status.GREEN
    finally:
        registry.hang = False
        await surface.stop()


def test_the_operation_timeout_is_bounded_by_the_heartbeat(make_app: MakeApp) -> None:
    """With MONGODB_HEARTBEAT_SECONDS=1 one MongoDB operation may not take the driver's
    10 s: a server that went away must show within a few heartbeats."""
    app = make_app(
        MONGODB_URI=SecretStr("mongodb://127.0.0.1:1/"),
        MONGODB_HEARTBEAT_SECONDS=1,
        MONGODB_KEY_TTL_SECONDS=5,
    )
    surface = registry_surface(app.surface_context())
    assert surface is not None
    registry = surface.registry
    assert isinstance(registry, MongoServiceRegistry)
    assert registry.timeout_seconds <= 1
    assert registry.server_selection_seconds <= 1
