"""The service container: order, injection, lifecycle, overrides."""

from __future__ import annotations

import pytest
from usvc_core import (
    ConfigurationError,
    HealthRegistry,
    ServiceContainer,
    ServiceNotFoundError,
    ServiceProvider,
    ServiceStartError,
    Status,
)

events: list[str] = []


class Db(ServiceProvider):
    name = "db"

    async def initialize(self) -> None:
        events.append("db.init")
        self.health_registry.register("db", Status.GREEN)

    async def cleanup(self) -> None:
        events.append("db.cleanup")


class Llm(ServiceProvider):
    def __init__(self, db: Db, temperature: float = 0.5) -> None:
        self.db = db
        self.temperature = temperature

    async def initialize(self) -> None:
        events.append("llm.init")

    async def cleanup(self) -> None:
        events.append("llm.cleanup")


class Broken(ServiceProvider):
    async def initialize(self) -> None:
        events.append("broken.init")
        raise RuntimeError("no credentials")


@pytest.fixture(autouse=True)
def _reset() -> None:
    events.clear()


async def test_order_injection_and_reverse_cleanup() -> None:
    """Services start in registration order, get earlier ones injected, stop in reverse."""
    health = HealthRegistry()
    c = ServiceContainer(health)
    c.register(Db)
    c.register(Llm)
    await c.initialize()
    llm = c.get(Llm)
    assert llm.db is c.get(Db) and llm.temperature == 0.5
    assert health.get("db") is not None
    await c.cleanup()
    assert events == ["db.init", "llm.init", "llm.cleanup", "db.cleanup"]


async def test_failed_initialize_cleans_up_what_started() -> None:
    """When a later service fails, the earlier ones are cleaned up and the error names it."""
    c = ServiceContainer(HealthRegistry())
    c.register(Db)
    c.register(Broken)
    c.register(Llm)
    with pytest.raises(ServiceStartError, match=r"Broken failed to initialize.*no credentials"):
        await c.initialize()
    assert events == ["db.init", "broken.init", "db.cleanup"]


def test_dependency_must_be_registered_first() -> None:
    """Registering Llm before Db says what to register first."""
    c = ServiceContainer(HealthRegistry())
    c.register(Llm)
    c.register(Db)
    with pytest.raises(ServiceNotFoundError, match="register Db before Llm"):
        c.build()


def test_registration_mistakes() -> None:
    """Twice the same class, or a non-service, is refused."""
    c = ServiceContainer(HealthRegistry())
    c.register(Db)
    with pytest.raises(ConfigurationError, match="registered twice"):
        c.register(Db)
    with pytest.raises(ConfigurationError, match="not a ServiceProvider"):
        c.register(int)  # type: ignore[arg-type]


def test_untyped_init_parameter_is_refused() -> None:
    """An __init__ parameter that is not a service and has no default cannot be built."""

    class Odd(ServiceProvider):
        def __init__(self, url: str) -> None:
            self.url = url

    c = ServiceContainer(HealthRegistry())
    c.register(Odd)
    with pytest.raises(ConfigurationError, match="parameter 'url'"):
        c.build()


async def test_override_replaces_without_initializing() -> None:
    """A test double is injected as it is: not initialized, but given the health registry."""

    class FakeDb(Db):
        async def initialize(self) -> None:
            events.append("fake.init")

    fake = FakeDb()
    c = ServiceContainer(HealthRegistry())
    c.register(Db)
    c.register(Llm)
    c.override(Db, fake)
    await c.initialize()
    assert c.get(Db) is fake and c.get(Llm).db is fake
    assert "fake.init" not in events and "db.init" not in events
    assert fake.health_registry is not None
    await c.cleanup()


async def test_instances_and_subclass_lookup() -> None:
    """A registered instance is used as is; asking for a base class finds the subclass."""
    db = Db()
    c = ServiceContainer(HealthRegistry())
    c.register(db)
    await c.initialize()
    assert c.get(ServiceProvider) is db
    assert c.can_provide(Db) and not c.can_provide(Llm)
    with pytest.raises(ServiceNotFoundError):
        c.get(Llm)
    await c.cleanup()


async def test_cleanup_errors_are_logged_not_raised() -> None:
    """A failing cleanup does not stop the others."""

    class Sticky(ServiceProvider):
        async def cleanup(self) -> None:
            raise RuntimeError("stuck")

    c = ServiceContainer(HealthRegistry())
    c.register(Db)
    c.register(Sticky)
    await c.initialize()
    await c.cleanup()
    assert events[-1] == "db.cleanup"
    assert Sticky.service_name() == "Sticky" and Db.service_name() == "db"
