"""Fixtures: a MongoDB-protocol server for the registry tests.

By default a SecantusDB subprocess (TTL sweep every second) on a random local port, shared
by the session; with ``USVC_TEST_MONGODB_URI`` set, that server instead (a real MongoDB).
Each test gets its own database, dropped afterwards. On CI (``CI=true``) a server that
cannot start fails the tests; elsewhere they are skipped, naming what is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from usvc_core import Application, WorkerSettings, action
from usvc_core.health import HealthRegistry, Status
from usvc_mongo import MongoServiceRegistry
from usvc_mongo.surface import REGISTRY_CHECK

EXTERNAL_URI_VAR = "USVC_TEST_MONGODB_URI"


def _load_helper() -> ModuleType:
    # --import-mode=importlib puts no test folder on sys.path: load the helper by path.
    name = "usvc_mongo_tests_secantus_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("secantus_server.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


secantus = _load_helper()


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Fail on CI (a Mongo suite that silently did not run is a lie), skip elsewhere."""
    if on_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def start_secantus(workdir: Path) -> Any:
    missing = secantus.secantus_missing_reason()
    if missing:
        unavailable(missing)
    server = secantus.SecantusProcess(workdir)
    try:
        server.start()
    except secantus.SecantusUnavailableError as exc:
        unavailable(str(exc))
    return server


@dataclass(frozen=True)
class MongoTarget:
    uri: str
    external: bool  #: a server given by USVC_TEST_MONGODB_URI (real MongoDB)


@pytest.fixture(scope="session")
def mongo_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoTarget]:
    """The server the registry tests run against."""
    external = os.environ.get(EXTERNAL_URI_VAR, "")
    if external:
        yield MongoTarget(external, external=True)
        return
    server = start_secantus(tmp_path_factory.mktemp("secantus"))
    try:
        yield MongoTarget(server.uri, external=False)
    finally:
        server.stop()


@pytest.fixture
def mongo_uri(mongo_target: MongoTarget) -> str:
    return mongo_target.uri


@pytest.fixture
def own_server(tmp_path: Path, mongo_target: MongoTarget) -> Iterator[Any]:
    """A SecantusDB server of this test alone, which it may kill and restart."""
    if mongo_target.external:
        pytest.skip(
            f"kills and restarts the server: needs the test-owned SecantusDB, and "
            f"{EXTERNAL_URI_VAR} points at an external one"
        )
    server = start_secantus(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db_name(mongo_uri: str) -> AsyncIterator[str]:
    """A fresh database name, dropped after the test."""
    name = f"usvc_test_{uuid.uuid4().hex[:12]}"
    yield name
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000
    )
    try:
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def make_registry(
    mongo_uri: str, db_name: str
) -> AsyncIterator[Callable[..., MongoServiceRegistry]]:
    """Build registries on the test database (closed after the test)."""
    made: list[MongoServiceRegistry] = []

    def make(**options: Any) -> MongoServiceRegistry:
        options.setdefault("timeout_seconds", 5.0)
        uri = options.pop("uri", mongo_uri)
        registry = MongoServiceRegistry(uri, options.pop("database", db_name), **options)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()


class EchoIn(BaseModel):
    text: str


class EchoOut(BaseModel):
    text: str


@action("echo")
async def echo(input: EchoIn) -> EchoOut:
    return EchoOut(text=input.text)


@pytest.fixture
def make_app() -> Callable[..., Application]:
    """Build an (unstarted) dev-mode Application with one ``echo`` action, no HTTP."""

    def make(surfaces: Any = (), **overrides: Any) -> Application:
        settings = WorkerSettings(
            **{
                "_env_file": None,  # a developer's .env must not leak into the tests
                "MICROSERVICE_NAME": "echo-service",
                "DEV_MODE": True,
                "SERVICE_VERSION": "2.1.0",
                "HTTP_ENABLED": False,
                **overrides,
            }
        )
        app = Application(
            settings=settings,
            surfaces=None if surfaces is None else list(surfaces),
            configure_logging=False,
        )
        app.actions.add(echo)  # registered now, so unstarted apps describe it too
        return app

    return make


WaitForStatus = Callable[..., Awaitable[None]]


@pytest.fixture
def wait_for_status() -> WaitForStatus:
    """``await wait_for_status(app, Status.GREEN)``: until the mongodb_registry check of
    ``app`` reaches that status (woken by the health registry, bounded)."""

    async def wait(app: Application, wanted: Status, seconds: float = 60) -> None:
        reached = asyncio.Event()

        def check(health: HealthRegistry) -> None:
            current = health.get(REGISTRY_CHECK)
            if current is not None and current.status is wanted:
                reached.set()

        app.health.subscribe(check)
        check(app.health)
        async with asyncio.timeout(seconds):
            await reached.wait()

    return wait
