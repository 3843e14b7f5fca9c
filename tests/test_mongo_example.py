"""End to end: the greeting example registers itself in MongoDB (SecantusDB here, or the real
MongoDB named by USVC_TEST_MONGODB_URI) and ``GET /health`` shows the registry check."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from usvc_core import Application, WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "greeting"
ACTIONS_DIR = EXAMPLE / "src" / "actions"
HELPER = ROOT / "packages" / "usvc-mongo" / "tests" / "secantus_server.py"


def _helper() -> ModuleType:
    # The SecantusDB launcher lives with the usvc-mongo tests; load it by path.
    name = "usvc_mongo_tests_secantus_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HELPER)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """USVC_TEST_MONGODB_URI, or a SecantusDB started for this module."""
    if external := os.environ.get("USVC_TEST_MONGODB_URI", ""):
        yield external
        return
    secantus = _helper()
    if missing := secantus.secantus_missing_reason():
        _unavailable(missing)
    server = secantus.SecantusProcess(tmp_path_factory.mktemp("secantus"))
    try:
        server.start()
    except secantus.SecantusUnavailableError as exc:
        _unavailable(str(exc))
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
async def mongo(mongo_uri: str) -> AsyncIterator[tuple[AsyncMongoClient[dict[str, Any]], str]]:
    """A client and a fresh database name (dropped afterwards)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    name = f"usvc_example_{uuid.uuid4().hex[:12]}"
    yield client, name
    await client.drop_database(name)
    await client.close()


async def test_the_greeting_example_registers_and_reports_it_on_health(
    mongo_uri: str,
    mongo: tuple[AsyncMongoClient[dict[str, Any]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Schemas and instance land in MongoDB; /health over HTTP shows mongodb_registry GREEN."""
    client, db_name = mongo
    monkeypatch.syspath_prepend(str(EXAMPLE))  # as when main.py runs from examples/greeting
    payment_api = importlib.import_module("src.services.payment").PaymentAPI
    settings = WorkerSettings(  # type: ignore[call-arg]
        _env_file=None,
        MICROSERVICE_NAME="greeting-service",
        DEV_MODE=True,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=0,
        SERVICE_VERSION="1.0.0",
        MONGODB_URI=SecretStr(mongo_uri),
        MONGODB_DATABASE=db_name,
    )
    app = Application(ACTIONS_DIR, settings=settings, configure_logging=False)
    app.register_service(payment_api)  # what the example's main.py does
    db = client[db_name]
    async with asyncio.timeout(120):
        async with app:
            assert app.http_port
            base = f"http://127.0.0.1:{app.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                while True:  # the first heartbeat runs right after startup
                    body = (await http.get("/health")).json()
                    if body["checks"]["mongodb_registry"]["status"] == "GREEN":
                        break
                    await asyncio.sleep(0.05)
                assert body["checks"]["mongodb_registry"]["details"]["consecutive_failures"] == 0
                job = await http.post("/dev/job", json={"action": "greet", "name": "Mongo"})
                assert job.json()["results"] == {"message": "Hello, Mongo!"}

            instance = await db.service_instances.find_one({"_id": app.instance_id})
            assert instance is not None
            assert instance["service"] == "greeting-service"
            assert instance["version"] == "1.0.0"
            assert instance["port"] == app.http_port
            assert instance["pid"] == os.getpid()
            assert set(instance["checks"]) >= {"job_queue", "mongodb_registry"}
            schema = await db.service_schemas.find_one(
                {"service": "greeting-service", "version": "1.0.0"}
            )
            assert schema is not None
            actions = {a["name"]: a for a in schema["actions"]}
            assert set(actions) == {"greet", "pay"}
            greet = actions["greet"]
            assert '"name"' in greet["input_schema"]
            assert '"message"' in greet["output_schema"]
    assert await db.service_instances.count_documents({}) == 0  # deregistered at shutdown
