"""The registry wired by Application from the settings alone (entry point usvc.surfaces)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from pydantic import SecretStr
from usvc_core import Application
from usvc_core.health import Status
from usvc_mongo import MongoServiceRegistry, registry_surface

MakeApp = Callable[..., Application]


async def test_the_service_registers_and_deregisters_on_shutdown(
    make_app: MakeApp,
    make_registry: Callable[..., MongoServiceRegistry],
    mongo_uri: str,
    db_name: str,
    wait_for_status: Any,
) -> None:
    """MONGODB_URI alone enables it: schemas and instance appear, the instance leaves at stop."""
    app = make_app(surfaces=None, MONGODB_URI=SecretStr(mongo_uri), MONGODB_DATABASE=db_name)
    reader = make_registry()
    async with app:
        await wait_for_status(app, Status.GREEN)
        [me] = await reader.live_instances("echo-service")
        assert (me.instance_id, me.pid, me.version) == (app.instance_id, os.getpid(), "2.1.0")
        assert me.port is None  # HTTP_ENABLED=False
        assert set(me.checks) >= {"job_queue"}
        doc = await reader.instances_collection.find_one({"_id": app.instance_id})
        assert doc is not None
        address = mongo_uri.split("//", 1)[1].split("/", 1)[0]
        assert address not in repr(doc)  # no server address, let alone credentials
        schemas = await reader.schemas("echo-service", "2.1.0")
        assert schemas is not None
        assert [a.name for a in schemas.actions] == ["echo"]
    assert await reader.live_instances("echo-service") == []
    assert await reader.instances_collection.count_documents({}) == 0
    assert await reader.schemas("echo-service", "2.1.0") is not None  # expires by TTL


async def test_credentials_stay_out_of_logs_and_health(
    make_app: MakeApp,
    mongo_target: Any,
    db_name: str,
    capfd: pytest.CaptureFixture[str],
    wait_for_status: Any,
) -> None:
    """A failing URI with a password: RED, and the password is nowhere to be seen."""
    if mongo_target.external:
        pytest.skip("builds a URI with made-up credentials for the test-owned SecantusDB")
    password = "Sup3rS3cretPassw0rd"
    uri = mongo_target.uri.replace("mongodb://", f"mongodb://mallory:{password}@")
    app = make_app(
        surfaces=[partial(registry_surface, timeout_seconds=1.0)],  # the entry point's factory
        MONGODB_URI=SecretStr(uri),
        MONGODB_DATABASE=db_name,
        MONGODB_HEARTBEAT_SECONDS=0.1,
        MONGODB_KEY_TTL_SECONDS=5,
    )
    async with app:
        await wait_for_status(app, Status.RED)
        health = repr(app.health.snapshot().to_dict())
    captured = capfd.readouterr()
    assert "AuthenticationFailed" in health or "authentication failed" in health
    for text in (health, captured.out, captured.err):
        assert password not in text
    assert "mallory:" not in captured.out + captured.err
