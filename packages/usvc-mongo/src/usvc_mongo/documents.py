"""The shape of the two collections' documents, and reading them back.

``service_schemas`` (one per service name + version; the content is written once)::

    {service, version, actions: [{name, input_schema, output_schema}], fingerprint,
     published_at, last_seen}

``service_instances`` (one per running process, ``_id`` = the instance id)::

    {_id, service, version, host, port, pid, started_at, last_seen, status, checks}

``last_seen`` is set with ``$currentDate`` (the server's clock, the one TTL deletion uses).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from usvc_core.health import Status
from usvc_core.ports import ActionSchema, InstanceInfo, ServiceDescription

__all__ = [
    "RegisteredInstance",
    "bson_safe",
    "description_from_document",
    "instance_document",
    "instance_from_document",
    "schema_content",
    "schema_fingerprint",
]

_MAX_DEPTH = 20


def bson_safe(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that BSON can store: keys made safe for field names (no leading
    ``$``, no ``.``), enums by name, unknown objects as strings."""
    if _depth > _MAX_DEPTH:
        return str(value)
    if isinstance(value, Enum):
        return value.name
    if value is None or isinstance(value, str | bool | float | datetime):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, Mapping):
        return {_safe_key(k): bson_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [bson_safe(v, _depth + 1) for v in value]
    return str(value)


def _safe_key(key: object) -> str:
    text = str(key).replace(".", "_")
    return "_" + text[1:] if text.startswith("$") else text


def _actions(description: ServiceDescription) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "input_schema": dict(a.input_schema),
            "output_schema": dict(a.output_schema) if a.output_schema is not None else None,
        }
        for a in sorted(description.actions, key=lambda a: a.name)
    ]


def schema_fingerprint(description: ServiceDescription) -> str:
    """A hash of the actions and their schemas: tells whether a version's content changed."""
    canonical = json.dumps(_actions(description), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_content(description: ServiceDescription, published_at: datetime) -> dict[str, Any]:
    """The write-once part of a ``service_schemas`` document (stored with ``$setOnInsert``).

    JSON Schemas are stored as a JSON string: their keys (``$defs``, ``$ref``) are not
    valid MongoDB field names, and consumers want the JSON text anyway.
    """
    return {
        "actions": [
            {
                "name": a["name"],
                "input_schema": json.dumps(a["input_schema"], sort_keys=True),
                "output_schema": (
                    json.dumps(a["output_schema"], sort_keys=True)
                    if a["output_schema"] is not None
                    else None
                ),
            }
            for a in _actions(description)
        ],
        "fingerprint": schema_fingerprint(description),
        "published_at": published_at,
    }


def description_from_document(doc: Mapping[str, Any]) -> ServiceDescription:
    """Read a ``service_schemas`` document back into a :class:`ServiceDescription`."""
    return ServiceDescription(
        service=str(doc["service"]),
        version=str(doc["version"]),
        actions=[
            ActionSchema(
                name=str(a["name"]),
                input_schema=json.loads(a["input_schema"]),
                output_schema=(
                    json.loads(a["output_schema"]) if a.get("output_schema") is not None else None
                ),
            )
            for a in doc.get("actions", [])
        ],
    )


def instance_document(instance: InstanceInfo) -> dict[str, Any]:
    """The ``$set`` part of a heartbeat (``last_seen`` is added with ``$currentDate``)."""
    return {
        "service": instance.service,
        "version": instance.version,
        "host": instance.host,
        "port": instance.port or None,  # 0 = no HTTP surface
        "pid": instance.pid,
        "started_at": instance.started_at,
        "status": instance.health.name,
        "checks": bson_safe(instance.checks),
    }


@dataclass(frozen=True, slots=True)
class RegisteredInstance:
    """One live instance as read from ``service_instances``."""

    instance_id: str
    service: str
    version: str
    host: str
    port: int | None
    pid: int
    started_at: datetime
    last_seen: datetime
    status: Status
    checks: Mapping[str, Any] = field(default_factory=dict)


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def instance_from_document(doc: Mapping[str, Any]) -> RegisteredInstance:
    return RegisteredInstance(
        instance_id=str(doc["_id"]),
        service=str(doc["service"]),
        version=str(doc["version"]),
        host=str(doc.get("host", "")),
        port=doc.get("port"),
        pid=int(doc.get("pid", 0)),
        started_at=_aware(doc["started_at"]),
        last_seen=_aware(doc["last_seen"]),
        status=Status.__members__.get(str(doc.get("status")), Status.RED),
        checks=dict(doc.get("checks") or {}),
    )
