"""MongoServiceRegistry against a real MongoDB-protocol server (SecantusDB, or the real
MongoDB named by USVC_TEST_MONGODB_URI): documents, indexes, TTL, deregistration."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from usvc_core.health import Status
from usvc_core.ports import ActionSchema, InstanceInfo, ServiceDescription
from usvc_mongo import MongoServiceRegistry, RegistryError

MakeRegistry = Callable[..., MongoServiceRegistry]

GREET = ActionSchema(
    "greet",
    {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "$defs": {"X": {"type": "integer"}},
    },
    {"type": "object", "properties": {"message": {"type": "string"}}},
)


def external() -> bool:
    return bool(os.environ.get("USVC_TEST_MONGODB_URI"))


def instance(service: str, *, version: str = "1.0.0", **changes: Any) -> InstanceInfo:
    info = InstanceInfo(
        instance_id=uuid.uuid4().hex,
        service=service,
        version=version,
        host="worker-1",
        port=8080,
        pid=4242,
        started_at=datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
        health=Status.GREEN,
        checks={"job_queue": {"status": "GREEN", "details": {"last_poll": "ok"}}},
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def service_name() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


async def indexes(registry: MongoServiceRegistry, collection: str) -> dict[str, Any]:
    info: dict[str, Any] = await registry.database[collection].index_information()
    return {name: spec for name, spec in info.items() if name != "_id_"}


async def test_publish_writes_the_schema_record_and_indexes(make_registry: MakeRegistry) -> None:
    """One service_schemas document per name+version with each action's JSON Schemas."""
    registry = make_registry(key_ttl_seconds=90)
    service = service_name()
    await registry.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))

    docs = await registry.schemas_collection.find({"service": service}).to_list(None)
    assert len(docs) == 1
    [doc] = docs
    assert doc["version"] == "1.0.0"
    assert isinstance(doc["published_at"], datetime)
    assert isinstance(doc["last_seen"], datetime)
    assert [a["name"] for a in doc["actions"]] == ["greet"]
    back = await registry.schemas(service, "1.0.0")
    assert back is not None
    assert back.actions == [GREET]
    assert await registry.schemas(service, "9.9.9") is None

    schema_indexes = await indexes(registry, "service_schemas")
    assert schema_indexes["service_version_unique"]["unique"] is True
    assert schema_indexes["service_version_unique"]["key"] == [("service", 1), ("version", 1)]
    assert schema_indexes["last_seen_ttl"]["expireAfterSeconds"] == 90
    instance_indexes = await indexes(registry, "service_instances")
    assert instance_indexes["last_seen_ttl"]["key"] == [("last_seen", 1)]
    assert instance_indexes["last_seen_ttl"]["expireAfterSeconds"] == 90
    assert instance_indexes["service_last_seen"]["key"] == [("service", 1), ("last_seen", 1)]


async def test_a_version_is_written_once(make_registry: MakeRegistry) -> None:
    """Publishing the same version again, even with other actions, does not rewrite it."""
    first, second = make_registry(), make_registry()
    service = service_name()
    await first.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))
    before = await first.schemas_collection.find_one({"service": service})
    other = ActionSchema("other", {"type": "object"}, None)
    await second.publish_schemas(ServiceDescription(service, "1.0.0", [other]))
    await second.publish_schemas(ServiceDescription(service, "2.0.0", [other]))

    after = await first.schemas_collection.find_one({"service": service, "version": "1.0.0"})
    assert before is not None
    assert after is not None
    for key in ("_id", "actions", "fingerprint", "published_at"):
        assert after[key] == before[key]
    assert await first.schemas_collection.count_documents({"service": service}) == 2
    newer = await first.schemas(service, "2.0.0")
    assert newer is not None
    assert [a.name for a in newer.actions] == ["other"]


async def test_heartbeat_upserts_one_document_per_instance(make_registry: MakeRegistry) -> None:
    """The instance document carries identity, port, health, and a refreshed last_seen."""
    registry = make_registry()
    service = service_name()
    me = instance(service)
    await registry.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))
    await registry.heartbeat(me)
    doc = await registry.instances_collection.find_one({"_id": me.instance_id})
    assert doc is not None
    assert {k: doc[k] for k in ("service", "version", "host", "port", "pid", "status")} == {
        "service": service,
        "version": "1.0.0",
        "host": "worker-1",
        "port": 8080,
        "pid": 4242,
        "status": "GREEN",
    }
    assert doc["started_at"] == me.started_at
    assert doc["checks"] == {"job_queue": {"status": "GREEN", "details": {"last_poll": "ok"}}}
    schema_seen = (await registry.schemas_collection.find_one({"service": service}) or {})[
        "last_seen"
    ]

    await asyncio.sleep(0.05)  # so the server's clock moves on between the two beats
    me.health = Status.RED
    me.checks = {"job_queue": {"status": "RED", "details": {"error": "down"}}}
    await registry.heartbeat(me)
    again = await registry.instances_collection.find_one({"_id": me.instance_id})
    assert again is not None
    assert await registry.instances_collection.count_documents({"service": service}) == 1
    assert again["last_seen"] > doc["last_seen"]
    assert again["status"] == "RED"
    assert again["checks"]["job_queue"]["details"] == {"error": "down"}
    schema_doc = await registry.schemas_collection.find_one({"service": service})
    assert schema_doc is not None
    assert schema_doc["last_seen"] > schema_seen  # the version stays alive with its instances


async def test_deregister_deletes_only_this_instance(make_registry: MakeRegistry) -> None:
    """A graceful stop removes this instance's document and keeps the others and the schemas."""
    registry = make_registry()
    service = service_name()
    await registry.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))
    me, other = instance(service), instance(service)
    await registry.heartbeat(me)
    await registry.heartbeat(other)
    await registry.deregister(me.instance_id)
    ids = [i.instance_id for i in await registry.live_instances(service)]
    assert ids == [other.instance_id]
    assert await registry.schemas(service, "1.0.0") is not None


async def test_live_instances_filter_on_heartbeat_freshness(make_registry: MakeRegistry) -> None:
    """A document whose heartbeat is older than the TTL is not live, deleted yet or not;
    ``max_age_seconds`` narrows the window."""
    registry = make_registry(key_ttl_seconds=3600)
    service = service_name()
    fresh = instance(service, version="1.0.0")
    aging = instance(service, version="1.0.0")
    expired = instance(service, version="1.0.0")
    newer = instance(service, version="2.0.0", port=0)
    for info in (fresh, aging, expired, newer):
        await registry.heartbeat(info)
    now = datetime.now(UTC)
    for info, age in ((aging, timedelta(minutes=30)), (expired, timedelta(hours=2))):
        await registry.instances_collection.update_one(
            {"_id": info.instance_id}, {"$set": {"last_seen": now - age}}
        )

    # The expired document may already be gone (the server's TTL monitor may have run),
    # so only what is live is asserted, never the document count.
    live = await registry.live_instances(service)
    expected = {fresh.instance_id, aging.instance_id, newer.instance_id}
    assert {i.instance_id for i in live} == expected
    by_id = {i.instance_id: i for i in live}
    assert by_id[newer.instance_id].port is None  # no HTTP surface
    assert by_id[fresh.instance_id].status is Status.GREEN
    assert by_id[fresh.instance_id].last_seen.tzinfo is not None
    v1 = await registry.live_instances(service, version="1.0.0")
    assert {i.instance_id for i in v1} == {fresh.instance_id, aging.instance_id}
    recent = await registry.live_instances(service, max_age_seconds=600)
    assert {i.instance_id for i in recent} == {fresh.instance_id, newer.instance_id}


async def test_a_changed_ttl_updates_the_existing_indexes(make_registry: MakeRegistry) -> None:
    """A new deployment with another MONGODB_KEY_TTL_SECONDS changes the TTL in place."""
    service = service_name()
    old = make_registry(key_ttl_seconds=90)
    await old.heartbeat(instance(service))
    new = make_registry(key_ttl_seconds=120)
    await new.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))
    await new.heartbeat(instance(service))
    for collection in ("service_schemas", "service_instances"):
        ttl_indexes = [
            spec
            for spec in (await indexes(new, collection)).values()
            if spec["key"] == [("last_seen", 1)]
        ]
        assert [spec["expireAfterSeconds"] for spec in ttl_indexes] == [120]


async def test_the_schema_record_is_republished_when_it_vanished(
    make_registry: MakeRegistry,
) -> None:
    """If the record expired or was dropped, the next heartbeat writes it again."""
    registry = make_registry()
    service = service_name()
    await registry.publish_schemas(ServiceDescription(service, "1.0.0", [GREET]))
    await registry.database.drop_collection("service_schemas")
    await registry.heartbeat(instance(service))
    back = await registry.schemas(service, "1.0.0")
    assert back is not None
    assert back.actions == [GREET]
    assert "service_version_unique" in await indexes(registry, "service_schemas")


@pytest.mark.slow
async def test_ttl_expiry_removes_a_stale_instance_and_keeps_a_live_one(
    make_registry: MakeRegistry,
) -> None:
    """The server's TTL monitor deletes a silent instance; a beating one survives."""
    ttl = 4
    registry = make_registry(key_ttl_seconds=ttl)
    service = service_name()
    stale, live = instance(service), instance(service)
    await registry.heartbeat(stale)
    await registry.heartbeat(live)

    async def keep_beating() -> None:
        while True:
            await registry.heartbeat(live)
            await asyncio.sleep(0.5)

    beater = asyncio.create_task(keep_beating())
    # SecantusDB sweeps every second here; mongod's TTL monitor runs once a minute.
    deadline = ttl + (90 if external() else 30)
    try:
        async with asyncio.timeout(deadline):
            while True:
                if not await registry.instances_collection.find_one({"_id": stale.instance_id}):
                    break
                await asyncio.sleep(0.25)
        assert await registry.instances_collection.find_one({"_id": live.instance_id})
    finally:
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)
    assert [i.instance_id for i in await registry.live_instances(service)] == [live.instance_id]


async def test_errors_never_carry_the_password(
    mongo_target: Any, make_registry: MakeRegistry
) -> None:
    """An authentication failure is reported without the URI's credentials."""
    if mongo_target.external:
        pytest.skip("builds a URI with made-up credentials for the test-owned SecantusDB")
    uri = mongo_target.uri.replace("mongodb://", "mongodb://mallory:Tr0ub4dor3@")
    registry = make_registry(uri=uri, timeout_seconds=3)
    with pytest.raises(RegistryError) as info:
        await registry.heartbeat(instance(service_name()))
    assert "Tr0ub4dor3" not in str(info.value)
    assert "Tr0ub4dor3" not in repr(registry)
