"""The records a service registry publishes (:class:`usvc_core.ports.ServiceRegistry`),
re-exported by :mod:`usvc_core.ports`. Apart from it so that they are created on first use:
only a service with a registry configured (usvc-mongo, ``MONGODB_URI``) needs them, and
each dataclass costs about a millisecond of start-up CPU to create. ``ActionSchema`` too:
``ActionDefinition.schema()`` makes one only for the registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from usvc_core.health import Status

__all__ = ["ActionSchema", "InstanceInfo", "ServiceDescription"]


@dataclass(frozen=True, slots=True)
class ActionSchema:
    """One action's name and the JSON Schemas of its input and output."""

    name: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ServiceDescription:
    """What a service can do, published once per service name and version."""

    service: str
    version: str
    actions: Sequence[ActionSchema]


@dataclass(slots=True)
class InstanceInfo:
    """One running process of a service, as the registry advertises it."""

    instance_id: str
    service: str
    version: str
    host: str
    port: int
    pid: int
    started_at: datetime
    health: Status = Status.GREEN
    checks: Mapping[str, Any] = field(default_factory=dict)
